"""Progress on stderr: a tqdm bar per counted step, a line per uncounted one; nothing when stderr is not a
terminal or stdout carries JSON."""
from __future__ import annotations

import sys

import click


class Bars:
    """One tqdm bar per stage step, on stderr; disabled when stderr is not a terminal and in --json mode."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None

    def __call__(self, label: str, total: int | None):
        from tqdm import tqdm

        self.close()
        if self.quiet:
            return lambda n: None
        if total is None:
            click.echo(f"  {label} ...", err=True)
            return lambda n: None
        self.bar = tqdm(total=total, desc=f"  {label}", unit="img", file=sys.stderr, leave=False,
                        dynamic_ncols=True)
        return self.bar.update

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
