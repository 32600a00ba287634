"""A directory store: one bundle directory per name, written to a temporary name and renamed."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from edgekit.core import bundle as manifest
from edgekit.errors import ManifestError, PublishError
from edgekit.publish.bundles import annotations, place, safe_files, verified


def root_of(dest: str) -> Path:
    return Path(urlparse(dest).path) if dest.startswith("file://") else Path(dest)


def publish(bundle: Path, dest: str, name: str | None, force: bool) -> str:
    m = verified(bundle)
    name = name or m["name"]
    safe_files([name])
    root = root_of(dest)
    final = root / name
    ours = manifest.file_sha256(bundle / manifest.MANIFEST)
    if (final / manifest.MANIFEST).is_file():
        if manifest.file_sha256(final / manifest.MANIFEST) == ours:
            try:
                manifest.read(final)
                return f"{final} already holds this bundle: nothing to do"
            except ManifestError:
                pass  # damaged copy of the same bundle: replace it
        elif not force:
            raise PublishError(f"{final} holds a different bundle; pass --force to replace it")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        for f in list(m["files"]) + [manifest.MANIFEST]:
            shutil.copyfile(bundle / f, tmp / f)
        manifest.read(tmp)
        os.chmod(tmp, 0o755)
        manifest.replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return f"published {name} to {final}"


def pull(src: Path, to: Path, force: bool) -> Path:
    if not (src / manifest.MANIFEST).is_file():
        raise PublishError(f"{src} is not a published bundle (no {manifest.MANIFEST})")
    files = [p.name for p in src.iterdir() if p.is_file()]
    safe_files(files)
    to.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-pull-", dir=to))
    try:
        for f in files:
            shutil.copyfile(src / f, tmp / f)
        return place(tmp, to, force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ls(dest: str) -> list[dict]:
    root = root_of(dest)
    if not root.is_dir():
        raise PublishError(f"{root} is not a directory")
    out = []
    for d in sorted(root.iterdir()):
        if (d / manifest.MANIFEST).is_file() and not d.name.startswith("."):
            m = manifest.read(d, verify=False)
            out.append({"name": d.name, **annotations(m, manifest.file_sha256(d / manifest.MANIFEST))})
    return out
