"""The progress callback every long step takes: `progress(label, total, unit="img")` announces a step (total None:
one uncounted step) and returns `advance(n)`. The CLI draws it; library callers may pass nothing."""
from __future__ import annotations

from typing import Callable

Progress = Callable[..., Callable[[int], None]]  # (label, total, unit="img") -> advance(n)


def no_progress(label: str, total: int | None, unit: str = "img") -> Callable[[int], None]:
    return lambda n: None
