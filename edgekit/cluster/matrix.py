"""`edgekit build --variant A,B --target X,Y`: every (variant, target) pair built once, one at a time in this process,
in `--jobs N` child processes, or as Ray tasks (ray_tasks.py). A pair that fails fails alone: its one-line error is
its row of the summary, the other pairs go on, and nothing half-written lands in --out."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgekit.builder.options import BuildOptions
from edgekit.core import bundle as manifest
from edgekit.core.targets import resolve_targets
from edgekit.core.variants import resolve_variants
from edgekit.errors import EdgekitError, first_line, missing_extra_line, os_error_line
from edgekit.progress import Progress, no_progress


@dataclass(frozen=True)
class Pair:
    variant: str
    target: str
    model: str | None = None  # a custom model's name (the bundle's prefix)

    @property
    def name(self) -> str:
        return manifest.bundle_name(self.variant, self.target, self.model)

    @property
    def label(self) -> str:
        return f"{self.variant} -> {self.target}"


def pairs(variant_spec: str, target_spec: str, model: str | None = None) -> list[Pair]:
    """Every pair of the variants and targets named (a name, a comma-separated list or 'all'), variant-major, so
    that targets of one route (x86 and onnx) share one export and quantization when pairs run in order."""
    return [Pair(v.name, t.name, model) for v in resolve_variants(variant_spec) for t in resolve_targets(target_spec)]


@dataclass
class PairResult:
    pair: Pair
    seconds: float
    manifest: dict | None = None  # None: the pair failed
    error: str | None = None  # its one line
    where: str = "here"  # this process, a job, or a Ray node
    path: Path | None = None

    @property
    def ok(self) -> bool:
        return self.manifest is not None

    def row(self) -> dict:
        """The summary's row: bundle, agreement, drop, size, build time, cached, where, and the error if it failed."""
        out = {"bundle": self.pair.name, "variant": self.pair.variant, "target": self.pair.target, "ok": self.ok,
               "seconds": round(self.seconds, 1), "where": self.where, "error": self.error}
        if self.ok:
            m = self.manifest
            v = m.get("validation") or {}
            stages = [s for s in m.get("timings", {}).values() if isinstance(s, dict)]
            hits = sum(s["cached"] for s in stages)
            out.update({"agreement": v.get("top1_agreement"), "drop_points": v.get("top1_drop_points"),
                        "int8_mb": round(manifest.artifact_bytes(self.path, m, "int8") / 1e6, 2) if self.path else None,
                        "cached": "all" if stages and hits == len(stages) else ("none" if hits == 0 else
                                                                                f"{hits}/{len(stages)}"),
                        "path": str(self.path) if self.path else None})
        return out


def build_pair(pair: Pair, options: BuildOptions, out_dir: Path, progress: Progress = no_progress) -> PairResult:
    """Build one pair in this process into `out_dir`; an expected failure becomes the result's error line. Ray
    workers run this too."""
    from edgekit import pipeline
    from edgekit.builder.cache import Cache, throwaway
    from edgekit.builder.options import requests

    t = time.perf_counter()
    try:
        req = next(requests(options, pair.variant, pair.target, out_dir)[0])
        store = throwaway(options.cache_dir) if options.no_cache else contextlib.nullcontext(Cache(options.cache_dir))
        with store as c:
            path, m = pipeline.build(req, c, progress)
    except EdgekitError as e:
        return PairResult(pair, time.perf_counter() - t, error=first_line(e))
    except OSError as e:  # a disk that fills, a path refused: this pair's, not the matrix's
        from edgekit.builder.cache import default_dir

        where = {"--out": out_dir, "--cache-dir": options.cache_dir or default_dir(), "$TMPDIR": tempfile.gettempdir()}
        return PairResult(pair, time.perf_counter() - t, error=os_error_line(e, where))
    except Exception as e:  # a bug shown in one pair must not hide the others' results
        if isinstance(e, ModuleNotFoundError) and (line := missing_extra_line(e.name, "build")):
            return PairResult(pair, time.perf_counter() - t, error=line)  # an install without the route's extra
        return PairResult(pair, time.perf_counter() - t, error=f"unexpected {type(e).__name__}: {first_line(e)} "
                          "(a bug in edgekit: rerun this pair alone with `edgekit --debug build` and report it)")
    return PairResult(pair, time.perf_counter() - t, m, path=path)


@dataclass
class Events:
    """What a matrix run tells its caller as it goes (the CLI prints it)."""
    started: Callable[[Pair, str], None] = lambda pair, where: None
    finished: Callable[[PairResult], None] = lambda result: None
    note: Callable[[str], None] = lambda line: None
    progress: Progress = no_progress  # stage progress of a pair built in this process


def run_serial(todo: list[Pair], options: BuildOptions, out_dir: Path, events: Events = Events()) -> list[PairResult]:
    results = []
    for pair in todo:
        events.started(pair, "here")
        r = build_pair(pair, options, out_dir, events.progress)
        events.finished(r)
        results.append(r)
    return results


@dataclass
class _Jobs:
    """--jobs N: each pair an `edgekit build` child process, at most N at a time, each given its share of the cores
    (a child's threads would otherwise fight the others')."""
    options: BuildOptions
    out_dir: Path
    jobs: int
    events: Events
    stopping: bool = False
    _children: set = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def one(self, pair: Pair, slot: int) -> PairResult:
        where = f"job {slot}"
        with self._lock:
            if self.stopping:  # Ctrl-C came while this pair waited for a slot
                return PairResult(pair, 0.0, error="interrupted", where=where)
        self.events.started(pair, where)
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // self.jobs))}
        cmd = [sys.executable, "-m", "edgekit.cli", "build", "--variant", pair.variant, "--target", pair.target,
               "--out", str(self.out_dir), *self.options.cli_args()]
        t = time.perf_counter()
        with tempfile.TemporaryFile() as log:
            with self._lock:
                if self.stopping:
                    return PairResult(pair, 0.0, error="interrupted", where=where)
                p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL, env=env)
                self._children.add(p)
            rc = p.wait()
            with self._lock:
                self._children.discard(p)
            log.seek(0)
            text = log.read().decode(errors="replace")
        took = time.perf_counter() - t
        path = self.out_dir / pair.name
        if rc == 0 and (path / manifest.MANIFEST).is_file():
            return PairResult(pair, took, manifest.read(path, verify=False), where=where, path=path)
        errors = [ln[len("error: "):] for ln in text.splitlines() if ln.startswith("error: ")]
        why = errors[-1] if errors else f"the build process exited {rc}" + (
            f" (killed by signal {-rc})" if rc < 0 else "")
        return PairResult(pair, took, error=why, where=where)

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            for p in self._children:
                p.terminate()


def run_jobs(todo: list[Pair], options: BuildOptions, out_dir: Path, jobs: int,
             events: Events = Events()) -> list[PairResult]:
    runner = _Jobs(options, out_dir, jobs, events)
    slots = list(range(jobs, 0, -1))
    lock = threading.Lock()

    def task(pair):
        with lock:
            slot = slots.pop()
        try:
            return runner.one(pair, slot)
        finally:
            with lock:
                slots.append(slot)

    results: dict[Pair, PairResult] = {}
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(task, p): p for p in todo}
        for f in as_completed(futures):
            r = f.result()
            results[r.pair] = r
            events.finished(r)
    except KeyboardInterrupt:
        runner.stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [results[p] for p in todo]


def run(todo: list[Pair], options: BuildOptions, out_dir: Path, jobs: int = 1, ray_address: str | None = None,
        retries: int = 2, events: Events = Events()) -> list[PairResult]:
    """Build every pair of `todo` into `out_dir`, the way asked; results in the order of `todo`."""
    manifest.prepare_out(out_dir)  # swept of what a killed matrix left
    if ray_address is not None:
        from edgekit.cluster import ray_tasks

        return ray_tasks.run(todo, options, out_dir, ray_address, retries, events)
    if jobs > 1 and len(todo) > 1:
        return run_jobs(todo, options, out_dir, min(jobs, len(todo)), events)
    return run_serial(todo, options, out_dir, events)


def expected_wall_s(seconds: list[float], nodes: int) -> float:
    """Wall time of pairs taking `seconds` each on `nodes` nodes of one build each, longest first onto the node
    free soonest (what a scheduler given every pair at once achieves, give or take the start-up)."""
    free = [0.0] * max(1, nodes)
    for s in sorted(seconds, reverse=True):
        i = free.index(min(free))
        free[i] += s
    return max(free)
