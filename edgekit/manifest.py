"""The bundle manifest: one schema (versioned), written at build time and read by devices (no build imports)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
LABELS = "labels.txt"


class ManifestError(ValueError):
    pass


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def checksums(bundle: Path) -> dict[str, str]:
    """sha256 of every file in the bundle except the manifest itself (relative POSIX paths)."""
    return {str(p.relative_to(bundle).as_posix()): file_sha256(p)
            for p in sorted(bundle.rglob("*")) if p.is_file() and p.name != MANIFEST}


def write(bundle: Path, manifest: dict) -> None:
    manifest = {"schema_version": SCHEMA_VERSION, **manifest, "files": checksums(bundle)}
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def read(bundle: Path, verify: bool = True) -> dict:
    path = Path(bundle) / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{bundle} is not an edgekit bundle (no {MANIFEST})")
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path} is not valid JSON ({e})") from None
    if m.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"{path}: schema version {m.get('schema_version')} is not supported "
                            f"(this edgekit reads {SCHEMA_VERSION})")
    if verify:
        for name, digest in m["files"].items():
            f = Path(bundle) / name
            if not f.is_file():
                raise ManifestError(f"bundle file missing: {name}")
            if file_sha256(f) != digest:
                raise ManifestError(f"bundle file {name} does not match its sha256 in the manifest")
    return m
