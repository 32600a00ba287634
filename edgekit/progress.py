"""The progress callback every long step takes: `progress(label, total)` announces a step (total None: one
uncounted step) and returns `advance(n)`. The CLI draws it; library callers may pass nothing."""
from __future__ import annotations

from typing import Callable

Progress = Callable[[str, int | None], Callable[[int], None]]


def no_progress(label: str, total: int | None) -> Callable[[int], None]:
    return lambda n: None
