"""`edgekit build --variant A,B --target X,Y`: every (variant, target) pair built once, one at a time in this process,
in `--jobs N` child processes, or as Ray tasks (ray_tasks.py). A pair that fails fails alone: its one-line error is
its row of the summary, the other pairs go on, and nothing half-written lands in --out."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.builder.options import BuildOptions
from edgekit.cluster.pair import Events, Pair, PairResult, build_pair
from edgekit.core import bundle as manifest


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
