"""The interface between the pipeline and a route (a front end from PyTorch to a target's INT8 artifact pair).

A target file names its route (`route = "onnx"` or `"litert"`); the route is the package `edgekit.builder.<route>`,
whose `ROUTE` implements `Route`. Adding a route means adding such a package, not editing the pipeline."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

from edgekit.builder.cache import Hit
from edgekit.builder.request import BuildRequest
from edgekit.builder.stages import Run
from edgekit.core.targets import Target
from edgekit.errors import UsageError


@dataclass(frozen=True)
class Artifacts:
    """One quantization of a model through a route, as cache entries: the float reference (`exp`), the INT8 model
    with its calibration report (`q`), and the target's artifact pair (`tgt`: meta names `int8` and `fp32`)."""
    exp: Hit
    q: Hit
    tgt: Hit


class Route(Protocol):
    name: str
    methods: tuple[str, ...]  # activation-range methods this route calibrates with
    raised_to: str  # the higher precision an accuracy budget moves a layer to
    sensitivity_method: str  # what `edgekit analyze` measures, in words
    budget_max_macs_share: float  # a budget raises only layers holding at most this share of the MACs

    def artifacts(self, run: Run, req: BuildRequest) -> Artifacts:
        """Export/convert, quantize, and make the target's artifacts (each a cached stage)."""

    def sensitivity(self, run: Run, req: BuildRequest, arts: Artifacts, images: int,
                    max_macs_share: float = 1.0) -> Hit:
        """Each layer raised on its own, ranked by what it recovers (meta: `layers`, best first)."""

    def tune(self, run: Run, req: BuildRequest, arts: Artifacts) -> tuple[Artifacts, dict]:
        """INT8-aware fine-tuning of `arts`' int8 model (req.tune): the tuned artifacts (the FP32 twin unchanged), or
        `arts` when tuning did not beat them on the held-out calibration images; and the record of what was done."""

    def raise_layers(self, run: Run, req: BuildRequest, arts: Artifacts, chosen: list[dict]) -> Artifacts:
        """`arts` with the `chosen` entries of a sensitivity ranking raised to `raised_to`."""


def route_of(target: Target) -> Route:
    return importlib.import_module(f"edgekit.builder.{target.route}").ROUTE


def check_method(target: Target, method: str) -> None:
    """Refuse a calibration method the target's route cannot calibrate with (before any stage runs)."""
    methods = route_of(target).methods
    if method not in methods:
        raise UsageError(f"calibration method '{method}' is not available for target {target.name}: choose one of "
                         f"{', '.join(methods)}")


def route_for(req: BuildRequest) -> Route:
    check_method(req.target, req.quant.method)
    return route_of(req.target)
