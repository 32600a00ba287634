"""The `edgekit` command line: each command parses its options, calls one function of a layer, renders the result.

Errors are handled once, in app.py: an EdgekitError, a file the system refuses (OSError) or a bad option is one `error:`
line and exit code 2; Ctrl-C is one line and 130; anything else is a bug, shown as one line with a hint to rerun
with --debug for the traceback (exit 1)."""
from edgekit.cli import bench, build, predict, publish, train  # noqa: F401  (each registers its commands on main)
from edgekit.cli.app import main

__all__ = ["main"]
