"""Content-addressed stage cache: each stage's output directory is keyed by a hash of everything it depends on.

An entry is complete only when its `entry.json` (every file's sha256) exists; entries are built in a temporary
directory and renamed into place. A entry whose files no longer match their hashes is removed and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .weights import sha256_file

ENTRY = "entry.json"


def default_dir() -> Path:
    env = os.environ.get("EDGEKIT_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgekit"


def key_of(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def code_digest(*modules: str) -> str:
    """Hash of the source of the edgekit modules a stage runs, so a code change invalidates its entries.

    Takes module names and reads their files without importing them (importing torch would cost a cached build
    two seconds)."""
    h = hashlib.sha256()
    for name in modules:
        h.update((Path(__file__).parent / f"{name}.py").read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Hit:
    path: Path
    meta: dict
    cached: bool


class Cache:
    def __init__(self, root: Path | None = None, enabled: bool = True):
        self.root = Path(root) if root else default_dir()
        self.enabled = enabled

    def _dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def lookup(self, stage: str, key: str) -> Hit | None:
        d = self._dir(stage, key)
        if not self.enabled or not d.is_dir():
            return None
        try:
            entry = json.loads((d / ENTRY).read_text())
            for name, digest in entry["files"].items():
                if sha256_file(d / name) != digest:
                    raise ValueError(f"{name} changed")
        except Exception as e:
            warnings.warn(f"corrupt cache entry {d} ({e}); rebuilding it", stacklevel=2)
            shutil.rmtree(d, ignore_errors=True)
            return None
        return Hit(d, entry.get("meta", {}), True)

    def run(self, stage: str, parts: dict, produce: Callable[[Path], dict]) -> Hit:
        """Return the cached entry for `parts`, or run `produce(tmpdir) -> meta` and store its files."""
        key = key_of({"stage": stage, **parts})
        hit = self.lookup(stage, key)
        if hit:
            return hit
        base = self.root / stage
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=base))
        try:
            meta = produce(tmp)
            files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            (tmp / ENTRY).write_text(json.dumps({"stage": stage, "key": key, "parts": parts, "files": files,
                                                 "meta": meta}, indent=1, default=str))
            final = self._dir(stage, key)
            if final.exists():  # another build won the race, or --no-cache left a stale one
                shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Hit(final, meta, False)
