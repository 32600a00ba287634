"""The `edgekit` group and its error handling (the package docstring tells the rules); each command module
registers its command on `main`."""
from __future__ import annotations

import os
import sys
import warnings

import click

from edgekit import __version__
from edgekit.errors import EdgekitError, first_line, missing_extra_line, os_error_line


def _warn_line(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {message}", err=True)


def _error(message: str, code: int):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class _Main(click.Group):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Click's own usage errors (an unknown option, a bad value) as one line too."""
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as e:
            where = f"; see `{e.ctx.command_path} --help`" if getattr(e, "ctx", None) else ""
            _error(f"{first_line(click.unstyle(e.format_message()), '').rstrip('.')}{where}", e.exit_code)
        except click.exceptions.Abort:
            _error("interrupted", 130)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgekitError as e:
            if not getattr(e, "already_reported", False):
                click.echo(f"error: {first_line(e, '')}", err=True)
            ctx.exit(getattr(e, "exit_code", 2))
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as e:
            if ctx.params.get("debug") or os.environ.get("EDGEKIT_DEBUG"):
                raise
            message, code = _explain(e, ctx.invoked_subcommand or "")
            click.echo(f"error: {message}", err=True)
            ctx.exit(code)


def _explain(e: Exception, command: str) -> tuple[str, int]:
    """The one line and exit code for what is no EdgekitError: a missing extra or a refused path is the user's to
    fix (2); anything else is a bug (1)."""
    if isinstance(e, ModuleNotFoundError) and (line := missing_extra_line(e.name, command)):
        return line, 2
    if isinstance(e, OSError):  # a path the system refuses, a disk that fills
        return os_error_line(e), 2
    return (f"unexpected {type(e).__name__}: {first_line(e, '')} (a bug in edgekit: rerun with `edgekit --debug "
            f"{command} ...` for the traceback and report it)", 1)


@click.group(cls=_Main)
@click.version_option(__version__, prog_name="edgekit")
@click.option("--debug", is_flag=True, help="Show the full traceback of an unexpected error.")
def main(debug: bool) -> None:
    """EfficientNet-Lite from PyTorch to validated INT8 artifacts for edge devices."""
    warnings.showwarning = _warn_line
