"""Content-addressed stage cache: each stage's output directory is keyed by a hash of everything it depends on.

An entry is complete only when its `entry.json` (every file's sha256) exists; entries are built in a temporary
directory and renamed into place. An entry whose files no longer match their hashes is removed and rebuilt.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import edgekit
from edgekit.core.bundle import file_sha256, sweep, temp_prefix

ENTRY = "entry.json"
# Packages whose code never runs inside a stage: the command line, the stores and the cluster driver. Everything
# else in edgekit (core tables, the data folders, the builder, both routes, analysis, the training layer whose
# INT8-aware loop a stage runs, device-side preprocessing, metrics and runtimes) counts, so no stage can miss code it
# reaches.
OUTSIDE_STAGES = ("cli", "publish", "cluster", "api.py")


def default_dir() -> Path:
    env = os.environ.get("EDGEKIT_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgekit"


def key_of(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def source_digest(root: Path, outside: tuple[str, ...] = OUTSIDE_STAGES) -> str:
    """Hash of every .py and .toml file below `root` (the edgekit package) outside OUTSIDE_STAGES, and of the data
    folders the code reads (targets/, calibration/: core/datafiles.py, beside the package or inside it), paths
    included: the same digest for a checkout and a wheel of the same code.

    Derived, never listed: a stage's key changes with any code or table it could reach (the variant table, the
    target and calibration files, the routes), at the price of rebuilding on edits that could not matter."""
    from edgekit.core.datafiles import KINDS, data_dir

    files = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.suffix not in (".py", ".toml") or not p.is_file() or rel.parts[0] in outside + KINDS \
                or "__pycache__" in rel.parts:
            continue
        files.append((rel.as_posix(), p))
    for kind in KINDS:
        files += [(f"{kind}/{p.name}", p) for p in sorted(data_dir(kind, root).glob("*.toml"))]
    h = hashlib.sha256()
    for rel, p in files:
        h.update(f"{rel}\0".encode())
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)  # the installed code does not change within a process
def code_digest() -> str:
    return source_digest(Path(edgekit.__file__).parent)


def private_path(src: Path, workdir: Path) -> Path:
    """`src` (a file of a finished cache entry) under `workdir`, for a tool that writes beside the file it is given:
    a hard link where the file system allows one (no copy: the tool reads, only its own files land in `workdir`),
    else a copy. Nothing may write into a finished entry, and a shared cache has concurrent readers."""
    dst = Path(workdir) / Path(src).name
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


@dataclass(frozen=True)
class Hit:
    path: Path
    meta: dict
    cached: bool


@contextlib.contextmanager
def throwaway(root: Path | str | None = None):
    """A cache that keeps nothing (--no-cache): a directory under the cache root, named so that a later build
    sweeps it away if this one is killed, and removed when the block ends."""
    base = Path(root) if root else default_dir()
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=temp_prefix("nocache"), dir=base) as d:
        yield Cache(Path(d))


class Cache:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root else default_dir()
        self._swept = False

    def sweep(self) -> int:
        """Remove what killed builds left in the cache (their temporary entries and --no-cache directories)."""
        n = sweep(self.root)
        for stage in self.root.iterdir() if self.root.is_dir() else ():
            if stage.is_dir() and not stage.name.startswith("."):
                n += sweep(stage)
        return n

    def _dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def lookup(self, stage: str, key: str) -> Hit | None:
        d = self._dir(stage, key)
        if not d.is_dir():
            return None
        try:
            entry = json.loads((d / ENTRY).read_text())
            for name, digest in entry["files"].items():
                if file_sha256(d / name) != digest:
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
        if not self._swept:  # once per build: the next run cleans up after a killed one
            self._swept = True
            self.sweep()
        base = self.root / stage
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(), dir=base))
        try:
            meta = produce(tmp)
            files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            (tmp / ENTRY).write_text(json.dumps({"stage": stage, "key": key, "parts": parts, "files": files,
                                                 "meta": meta}, indent=1, default=str))
            final = self._dir(stage, key)
            try:
                os.rename(tmp, final)  # fails if the entry exists: never pull a finished entry from under a reader
            except OSError:
                won = self.lookup(stage, key)  # another build (a --jobs sibling, another node) finished it first
                if won is None:
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
                return Hit(won.path, won.meta, False)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Hit(final, meta, False)
