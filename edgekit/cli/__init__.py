"""The `edgekit` command line: each command parses its options, calls one function of a layer, renders the result.

Errors are handled here once: an EdgekitError is one `error:` line and exit code 2; Ctrl-C is one line and 130;
anything else is a bug, shown as one line with a hint to rerun with --debug for the traceback (exit 1)."""
from __future__ import annotations

import os
import warnings

import click

from edgekit import __version__
from edgekit.errors import EdgekitError


def _warn_line(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {message}", err=True)


class _Main(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgekitError as e:
            if not getattr(e, "already_reported", False):
                click.echo(f"error: {e}", err=True)
            ctx.exit(getattr(e, "exit_code", 2))
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as e:
            if ctx.params.get("debug") or os.environ.get("EDGEKIT_DEBUG"):
                raise
            first = (str(e).strip().splitlines() or [""])[0]
            click.echo(f"error: unexpected {type(e).__name__}: {first} (a bug in edgekit: rerun with "
                       f"`edgekit --debug {ctx.invoked_subcommand or ''} ...` for the traceback and report it)",
                       err=True)
            ctx.exit(1)


@click.group(cls=_Main)
@click.version_option(__version__, prog_name="edgekit")
@click.option("--debug", is_flag=True, help="Show the full traceback of an unexpected error.")
def main(debug: bool) -> None:
    """EfficientNet-Lite from PyTorch to validated INT8 artifacts for edge devices."""
    warnings.showwarning = _warn_line


from edgekit.cli import bench, build, publish  # noqa: E402  (they register their commands on main)

__all__ = ["main", "bench", "build", "publish"]
