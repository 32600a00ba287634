"""The stage runner: cache lookup, timing and the stage log, written once for every stage of every route.

A stage is a plain function `stage_x(run, ...) -> Hit` that names its own inputs (upstream entries, image digests,
options) and a `produce(tmpdir) -> meta` that writes its files. `Run.stage` adds to every key what any stage may
depend on without saying so: the variant and target facts, the source of every module a stage can reach
(cache.code_digest) and the tool versions. So a key cannot go stale by a list someone forgot to extend.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

from edgekit.builder.cache import Cache, Hit, code_digest
from edgekit.builder.calibration import MIN_CALIB_IMAGES
from edgekit.builder.provenance import tool_versions
from edgekit.builder.request import BuildRequest
from edgekit.core import contract
from edgekit.device.imagesets import Loaded, load_pixels
from edgekit.errors import BuildError
from edgekit.progress import Progress, no_progress


@dataclass
class StageLog:
    """Stage name -> (seconds, cached); the CLI prints it and the manifest records it."""

    stages: dict[str, dict] = field(default_factory=dict)

    def add(self, name: str, seconds: float, cached: bool) -> None:
        key, n = name, 2
        while key in self.stages:  # a budget search runs stages again, for other models
            key, n = f"{name}#{n}", n + 1
        self.stages[key] = {"seconds": round(seconds, 3), "cached": cached}


@dataclass
class Run:
    """What the stages of one build (or analysis) share: the request, the cache, the log, the progress display,
    and the calibration images, read once and only if a stage needs them."""

    req: BuildRequest
    cache: Cache
    progress: Progress = no_progress
    log: StageLog = field(default_factory=StageLog)
    _calib: Loaded | None = None

    def stage(self, name: str, parts: dict, produce: Callable, log_as: str | None = None,
              req: BuildRequest | None = None, per_target: bool = True) -> Hit:
        """The cached entry of stage `name` for `parts`, produced if missing; timed and logged as `log_as`.
        per_target=False: the stage reads nothing of the target but its route, so targets of one route share it."""
        req = req or self.req
        target = dataclasses.asdict(req.target) if per_target else {"route": req.target.route}
        key = {**parts, "spec": {"variant": req.variant.to_dict(), "target": target, "classes": req.classes.digest},
               "code": code_digest(), "tools": tool_versions()}
        t = time.perf_counter()
        hit = self.cache.run(name, key, produce)
        self.log.add(log_as or name, time.perf_counter() - t, hit.cached)
        return hit

    def load(self, samples, label: str) -> Loaded:
        """Decode and preprocess `samples` for the request's variant, with a progress bar."""
        advance = self.progress(label, len(samples))

        def each(it):
            for s in it:
                yield s
                advance(1)

        return load_pixels(samples, contract.preprocessing(self.req.variant), each)

    def calib(self) -> Loaded:
        if self._calib is None:
            got = self.load(self.req.selection.calib, "read calibration images")
            if len(got.pixels) < MIN_CALIB_IMAGES:
                raise BuildError(f"only {len(got.pixels)} usable calibration image(s) in {self.req.selection.source} "
                                 f"({len(got.skipped)} unreadable); at least {MIN_CALIB_IMAGES} are needed")
            self._calib = got
        return self._calib
