"""edgekit's own pure-Python wheel, written into every bundle so a board installs the device side from the bundle
itself (`pip install "./edgekit-X-py3-none-any.whl[device-tflite]"`: the runtime comes from the package index).

Built from the running edgekit: the package's own files, and the dependencies, extras and console script of the
checkout's pyproject.toml (or, for an edgekit installed from a wheel, its installed metadata). Deterministic: the
same code gives the same bytes.
"""
from __future__ import annotations

import base64
import hashlib
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import edgekit
from edgekit import __version__
from edgekit.errors import BuildError

_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: no build time in the bytes
PACKAGE_FILES = (".py", ".toml", ".typed")


def wheel_name() -> str:
    return f"edgekit-{__version__}-py3-none-any.whl"


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def package_files() -> list[tuple[str, bytes]]:
    """The package's own files, and the data folders (targets/, calibration/) as edgekit/<folder>/, where an
    installed wheel reads them (core/datafiles.py)."""
    from edgekit.core.datafiles import KINDS, data_dir

    root = Path(edgekit.__file__).parent
    out = [(f"edgekit/{p.relative_to(root).as_posix()}", p.read_bytes())
           for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in PACKAGE_FILES
           and "__pycache__" not in p.parts and p.relative_to(root).parts[0] not in KINDS]
    for kind in KINDS:
        out += [(f"edgekit/{kind}/{p.name}", p.read_bytes()) for p in sorted(data_dir(kind).iterdir())
                if p.is_file() and p.suffix in (".toml", ".md")]
    return sorted(out)


def _pyproject() -> dict | None:
    """The checkout's pyproject.toml, when edgekit runs from one: the source of the dependencies and extras."""
    path = Path(edgekit.__file__).parent.parent / "pyproject.toml"
    if not path.is_file():
        return None
    doc = tomllib.loads(path.read_text())
    return doc if doc.get("project", {}).get("name") == "edgekit" else None


def _requirement(req: str, extra: str | None) -> str:
    if extra is None:
        return req
    name, _, marker = req.partition(";")
    return f"{name.strip()}; ({marker.strip()}) and extra == \"{extra}\"" if marker else \
        f"{name.strip()}; extra == \"{extra}\""


def metadata_from(project: dict) -> tuple[str, str]:
    """(METADATA, entry_points.txt) for the wheel, from pyproject.toml's [project] table."""
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {__version__}",
             f"Summary: {project.get('description', '')}", f"Requires-Python: {project.get('requires-python', '')}"]
    if "license" in project and "text" in project["license"]:
        lines.append(f"License: {project['license']['text']}")
    lines += [f"Requires-Dist: {_requirement(r, None)}" for r in project.get("dependencies", [])]
    for extra, reqs in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f"Requires-Dist: {_requirement(r, extra)}" for r in reqs]
    scripts = project.get("scripts", {})
    entry_points = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items()) if scripts else ""
    return "\n".join(lines) + "\n", entry_points


def _installed_metadata() -> tuple[str, str]:
    # an edgekit installed from a wheel: its .dist-info is the source (a stale .egg-info has no METADATA)
    found = [d for d in metadata.distributions(name="edgekit") if d.read_text("METADATA")]
    if not found or found[0].version != __version__:
        raise BuildError("edgekit runs from neither a checkout (no pyproject.toml beside it) nor an install of this "
                         f"version ({__version__}), so its wheel cannot be made for the bundle: pip install -e . "
                         "in the checkout")
    return found[0].read_text("METADATA"), found[0].read_text("entry_points.txt") or ""


def build_wheel(dest: Path) -> Path:
    """Write the wheel into directory `dest`; its path."""
    project = _pyproject()
    meta, entry_points = metadata_from(project["project"]) if project else _installed_metadata()
    info = f"edgekit-{__version__}.dist-info"
    files = package_files() + [
        (f"{info}/METADATA", meta.encode()),
        (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: edgekit\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
        (f"{info}/entry_points.txt", entry_points.encode()),
        (f"{info}/top_level.txt", b"edgekit\n"),
    ]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files) + f"{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode()))
    path = Path(dest) / wheel_name()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            zi = zipfile.ZipInfo(name, _EPOCH)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return path
