"""One pair of a build matrix (a variant for a target): what it is, how it is built in this process (here, in a
--jobs child, on a Ray worker: build_pair), its result and the events a run reports. matrix.py runs many pairs
here or in child processes, ray_tasks.py on a Ray cluster; both read this."""
from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass
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
            out.update({"agreement": v.get("top1_agreement"), "agreement_ci95": v.get("top1_agreement_ci95"),
                        "drop_points": v.get("top1_drop_points"), "drop_points_ci95": v.get("top1_drop_points_ci95"),
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
