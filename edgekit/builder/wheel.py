"""edgekit's own pure-Python wheel, written into every bundle so a board installs the device side from the bundle
itself (`pip install "./edgekit-X-py3-none-any.whl[device-tflite]"`: the runtime comes from the package index).

Built from the running edgekit: its installed metadata (dependencies and extras as pyproject.toml declares them) and
the package's own files. Deterministic: the same code gives the same bytes.
"""
from __future__ import annotations

import base64
import hashlib
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
    root = Path(edgekit.__file__).parent
    return [(f"edgekit/{p.relative_to(root).as_posix()}", p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in PACKAGE_FILES
            and "__pycache__" not in p.parts]


def build_wheel(dest: Path) -> Path:
    """Write the wheel into directory `dest`; its path."""
    # the installed .dist-info (a checkout's stale .egg-info, which sys.path may show first, has no METADATA)
    found = [d for d in metadata.distributions(name="edgekit") if d.read_text("METADATA")]
    if not found:
        raise BuildError("edgekit is not installed (only on sys.path), so its wheel cannot be made for the bundle: "
                         "pip install -e . in the checkout")
    dist = found[0]
    if dist.version != __version__:
        raise BuildError(f"the installed edgekit metadata says {dist.version} but the code is {__version__}: "
                         "reinstall with pip install -e . in the checkout")
    info = f"edgekit-{__version__}.dist-info"
    files = package_files() + [
        (f"{info}/METADATA", (dist.read_text("METADATA") or "").encode()),
        (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: edgekit\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
        (f"{info}/entry_points.txt", (dist.read_text("entry_points.txt") or "").encode()),
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
