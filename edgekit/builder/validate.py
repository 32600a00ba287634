"""Stages validate and golden: the INT8 artifact against its FP32 reference on held-out images with the target's
own runtime, and the golden set a bundle carries so a board can check itself against PyTorch."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.builder.cache import Hit
from edgekit.builder.request import BuildRequest
from edgekit.builder.stages import Run
from edgekit.core import contract
from edgekit.core.bundle import GOLDEN_FILE
from edgekit.device import metrics, preprocess, runtimes

GOLDEN_IMAGES = 32  # preprocessed validation inputs carried in the bundle, with PyTorch's logits


def stage_validate(run: Run, req: BuildRequest, tgt: Hit) -> Hit:
    parts = {"target": tgt.path.name, "val": req.selection.val_digest, "runtime": req.target.runtime}

    def produce(tmp: Path) -> dict:
        loaded = run.load(req.selection.val, "validate: read held-out images")
        if len(loaded.pixels) == 0:
            return {"images": 0, "note": "no usable validation images"}
        logits = runtimes.artifact_logits(req.target.runtime, tgt.path, tgt.meta, loaded.pixels,
                                          contract.for_artifacts(req.target, req.variant),
                                          lambda label, total, unit="img":
                                          run.progress(f"validate: {label}", total, unit))
        np.savez_compressed(tmp / "logits.npz", fp32=logits["fp32"], int8=logits["int8"], labels=loaded.labels,
                            ids=np.array(loaded.ids))
        return {**metrics.drift(logits["fp32"], logits["int8"], loaded.labels),
                "skipped_unreadable": loaded.skipped}

    return run.stage("validate", parts, produce, req=req)


def stage_golden(run: Run, req: BuildRequest, tgt: Hit) -> Hit:
    """The bundle's self-check: the first validation inputs, already preprocessed (uint8 pixels), with the PyTorch
    FP32 logits, so a board with no images still measures drift against PyTorch (`edgekit bench`). The same figures
    with the target runtime on this machine go into the manifest for comparison."""
    parts = {"target": tgt.path.name, "weights": req.weights.sha256, "val": req.selection.val_digest,
             "images": GOLDEN_IMAGES}

    def produce(tmp: Path) -> dict:
        import torch

        from edgekit.builder import model as model_mod
        from edgekit.builder import weights as weights_mod

        loaded = run.load(req.selection.val[:GOLDEN_IMAGES], "golden set: PyTorch FP32 logits")
        if len(loaded.pixels) == 0:
            return {"images": 0}
        x = preprocess.to_input(loaded.pixels, contract.pixels_nchw(req.variant))
        net = model_mod.with_pixel_input(weights_mod.build_model(req.variant, req.weights)).eval()
        with torch.inference_mode():
            ref = net(torch.from_numpy(x)).numpy()
        np.savez_compressed(tmp / GOLDEN_FILE, pixels=loaded.pixels, torch_logits=ref, labels=loaded.labels,
                            ids=np.array(loaded.ids))
        out = runtimes.artifact_logits(req.target.runtime, tgt.path, tgt.meta, loaded.pixels,
                                       contract.for_artifacts(req.target, req.variant))
        return {"images": int(len(x)), "file": GOLDEN_FILE,
                "build_time_vs_pytorch": {p: metrics.drift(ref, out[p], loaded.labels) for p in out}}

    return run.stage("golden", parts, produce, req=req)
