"""Where the data that drives the code lives: the target table (`targets/*.toml`, one file per target) and the
calibration recipes (`calibration/*.toml`), two top-level folders of the repository, beside `edgekit/`.

A wheel carries them inside the package, as `edgekit/targets/` and `edgekit/calibration/` (pyproject.toml's
package-dir; the bundle's own wheel likewise, builder/wheel.py), so no generic top-level name lands in
site-packages; a checkout, or an editable install of it, reads them beside the package. `data_dir` is the one place
that knows this: adding a target or a recipe is adding a file there."""
from __future__ import annotations

from pathlib import Path

import edgekit

KINDS = ("targets", "calibration")


def data_dir(kind: str, package: Path | None = None) -> Path:
    """The folder of `kind` for the edgekit package at `package` (default: the running one)."""
    if kind not in KINDS:
        raise ValueError(f"unknown data folder {kind!r}")
    root = Path(package) if package is not None else Path(edgekit.__file__).parent
    inside = root / kind  # an installed wheel
    return inside if inside.is_dir() else root.parent / kind  # a checkout, or an editable install of one


def data_files(kind: str, package: Path | None = None) -> list[Path]:
    """The TOML files of `kind`, sorted by name."""
    return sorted(data_dir(kind, package).glob("*.toml"))
