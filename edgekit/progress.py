"""The progress callback every long step takes: `progress(label, total, unit="img")` announces a step (total None:
one uncounted step) and returns `advance(n)` (which may also take `info`, running figures to show beside it); total 0 is a note, a line said between steps. The CLI draws it; library callers may pass nothing."""
from __future__ import annotations

from typing import Callable

Progress = Callable[..., Callable[..., None]]  # (label, total, unit="img") -> advance(n, info=None)


def no_progress(label: str, total: int | None, unit: str = "img") -> Callable[[int], None]:
    return lambda n, info=None: None


def with_info(advance: Callable[..., None]) -> Callable[[int, str | None], None]:
    """`advance` as a two-argument callable, whether or not the caller's takes the running figures."""
    import inspect

    try:
        params = inspect.signature(advance).parameters.values()
        takes = len(params) >= 2 or any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)
    except (TypeError, ValueError):  # a builtin without a signature
        takes = False
    return advance if takes else (lambda n, info=None: advance(n))
