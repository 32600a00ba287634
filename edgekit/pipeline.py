"""`edgekit build` and `edgekit analyze`: the builder's stages in order, for any route, with the accuracy-budget
search (analysis/) between validation and the golden set.

    variant + weights ─► route (onnx: export ─► QDQ quantize ─► backend; litert: convert ─► int8 quantize)
                     ─► [INT8-aware fine-tuning of the int8 integers, --int8-aware: builder/int8_aware.py]
                     ─► validate (INT8 vs FP32 on held-out images, the target's runtime)
                     ─► accuracy budget (analysis/budget.py, when asked) ─► golden set ─► bundle

Every arrow is a cached stage (builder/stages.py); the bundle is assembled in a temporary directory and renamed into
place.
"""
from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path

from edgekit.analysis.budget import MAX_SLOWDOWN, meet_budget, mixed_latency
from edgekit.analysis.choice import Chosen, tuned_or_post_training
from edgekit.builder.bundle import check_replace, write_bundle
from edgekit.builder.cache import Cache
from edgekit.builder.calibration import recipes
from edgekit.builder.provenance import tool_versions
from edgekit.builder.request import BuildRequest
from edgekit.builder.route import route_for
from edgekit.builder.stages import Run
from edgekit.builder.validate import follows_fp32, stage_golden, stage_validate
from edgekit.core import bundle as manifest
from edgekit.core.intervals import agreement_and_sqnr
from edgekit.progress import Progress, no_progress


def build(req: BuildRequest, c: Cache, progress: Progress = no_progress) -> tuple[Path, dict]:
    """Run every stage (cached) and write the bundle; returns its path and manifest."""
    check_replace(req)  # before minutes of stages, and again when the bundle is renamed into place
    run = Run(req, c, progress)
    route = route_for(req)
    for w in req.selection.warnings():
        warnings.warn(w)
    t0 = time.perf_counter()
    arts = route.artifacts(run, req)
    if req.tune is not None:
        tuned, tuning = route.tune(run, req, arts)
        st = tuned_or_post_training(run, req, arts, tuned, tuning)
        if not tuning["kept"]:
            warnings.warn(f"INT8-aware fine-tuning did not improve on post-training quantization on the held-out "
                          f"calibration images (logit SQNR {tuning['held_out_before']['logit_sqnr_db']:.2f} dB, "
                          "agreement as good or better); the bundle keeps the post-training model")
        elif not st.tuned:
            v = st.tuning["validation"]
            warnings.warn(f"the INT8-aware fine-tuned model scored below the post-training one on the validation "
                          f"images ({agreement_and_sqnr(v['tuned'])} against {agreement_and_sqnr(v['post_training'])}); the bundle "
                          "keeps the post-training model and the manifest records both")
    else:
        st = Chosen(arts, stage_validate(run, req, arts.tgt), req.quant)
    if req.budget is not None:
        st = meet_budget(run, route, st)
        if st.plain is not None:
            st.mixed["latency"] = mixed_latency(run, st.plain, st.arts.tgt)
            ratio = st.mixed["latency"]["threads_1"]["ratio"]
            if ratio > MAX_SLOWDOWN:
                warnings.warn(f"the budget's layers in {st.mixed['raised_to']} make {req.variant.name} on "
                              f"{req.target.name} x{ratio:.2f} slower than plain int8 (limit x{MAX_SLOWDOWN:.2f}); "
                              "the manifest records both")
    found = follows_fp32(st.val.meta, agreement_counts=req.weights.pretrained and not req.selection.val_from_recipe)
    if req.budget is not None:
        found += req.budget.unresolved(st.val.meta)
    if not req.classes.imagenet and req.selection.source in recipes():
        used = "calibrated and validated" if req.selection.val_from_recipe else "calibrated"
        found.append(f"a model of your own classes {used} on the embedded '{req.selection.source}' photographs (none "
                     "of its classes): pass --calib DIR with photos of your classes, one folder per class")
    for w in found:
        warnings.warn(w)
    gold = stage_golden(run, req, st.arts.tgt)
    run.log.stages["total_seconds_before_bundle"] = round(time.perf_counter() - t0, 3)
    tuning = None if st.tuning is None else {**st.tuning, "shipped": st.tuned}
    path = write_bundle(dataclasses.replace(req, quant=st.quant), st.arts, st.val, gold, run.log, st.mixed, found,
                        tuning)
    return path, json.loads((path / manifest.MANIFEST).read_text())


def analyze(req: BuildRequest, c: Cache, images: int, progress: Progress = no_progress) -> dict:
    """`edgekit analyze`: the route's stages (cached, as a build would run them), then its per-layer sensitivity."""
    run = Run(req, c, progress)
    route = route_for(req)
    arts = route.artifacts(run, req)
    sens = route.sensitivity(run, req, arts, images)
    return {"variant": req.variant.name, "target": req.target.name, "calibration": {
                "source": req.selection.source, "digest": req.selection.calib_digest, **req.quant.to_dict()},
            "method": route.sensitivity_method, **sens.meta, "timings": run.log.stages, "tools": tool_versions()}
