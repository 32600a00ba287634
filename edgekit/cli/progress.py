"""Progress on stderr for long work. On a terminal: a tqdm bar per counted step, a line per uncounted one. Elsewhere
(CI logs, nohup, a pipe): plain lines. Either way a step that took a second or more ends with its elapsed time."""
from __future__ import annotations

import sys
import time

import click

MIN_REPORTED_S = 1.0  # shorter steps end silently


class Bars:
    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.bar = None
        self.label: str | None = None
        self.t0 = 0.0

    def __call__(self, label: str, total: int | None, unit: str = "img"):
        self._end_step()
        if self.quiet:
            return lambda n, info=None: None
        if total == 0:  # a note between steps (a training epoch's figures): said as it is, not timed
            click.echo(f"  {label}", err=True)
            return lambda n, info=None: None
        self.label, self.t0 = label, time.perf_counter()
        if total is None or not self.tty:
            plural = "" if total == 1 or unit == "img" else ("es" if unit.endswith(("ch", "sh", "s", "x")) else "s")
            click.echo(f"  {label}" + (f" ({total} {unit}{plural})" if total else "") + " ...", err=True)
            return lambda n, info=None: None
        from tqdm import tqdm

        self.bar = bar = tqdm(total=total, desc=f"  {label}", unit=unit, file=sys.stderr, leave=False,
                              dynamic_ncols=True)

        def advance(n: int, info: str | None = None) -> None:
            if info:  # running figures (a training epoch's loss and accuracy) beside the bar
                bar.set_postfix_str(info, refresh=False)
            bar.update(n)

        return advance

    def _end_step(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.label is not None:
            took = time.perf_counter() - self.t0
            if took >= MIN_REPORTED_S:
                click.echo(f"  {self.label}: {took:.1f} s", err=True)
            self.label = None

    def done(self) -> None:
        """The work finished: the last step ends with its time too."""
        self._end_step()

    def close(self) -> None:
        """The work stopped (an error): the bar goes, no time is claimed for the unfinished step."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.label = None
