"""Stages validate and golden: the INT8 artifact against its FP32 reference on held-out images with the target's
own runtime, and the golden set a bundle carries so a board can check itself against PyTorch."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekit.builder.cache import ENTRY, Hit
from edgekit.builder.request import BuildRequest
from edgekit.builder.stages import Run
from edgekit.core import contract
from edgekit.core.bundle import GOLDEN_FILE
from edgekit.core.intervals import percent
from edgekit.device import metrics, preprocess, runtimes

GOLDEN_IMAGES = 32  # preprocessed validation inputs carried in the bundle, with PyTorch's logits


def stage_reference(run: Run, req: BuildRequest, tgt: Hit, loaded=None) -> Hit:
    """The FP32 artifact's logits on the validation images. Every INT8 model a build validates (other range methods,
    INT8-aware fine-tuning, raised layers) has the same FP32 twin: keyed by its bytes, it runs once."""
    stem = Path(tgt.meta["fp32"]).stem
    files = json.loads((tgt.path / ENTRY).read_text())["files"]
    parts = {"fp32": {n: d for n, d in files.items() if Path(n).stem == stem}, "val": req.selection.val_digest,
             "runtime": req.target.runtime}

    def produce(tmp: Path) -> dict:
        pixels = (loaded or run.load(req.selection.val, "validate: read held-out images")).pixels
        logits = runtimes.artifact_logits(req.target.runtime, tgt.path, tgt.meta, pixels,
                                          contract.for_artifacts(req.target, req.variant),
                                          lambda label, total, unit="img":
                                          run.progress(f"validate: {label}", total, unit), ("fp32",))
        np.save(tmp / "fp32.npy", logits["fp32"])
        return {"images": int(len(pixels))}

    return run.stage("reference", parts, produce, req=req)


def stage_validate(run: Run, req: BuildRequest, tgt: Hit) -> Hit:
    parts = {"target": tgt.path.name, "val": req.selection.val_digest, "runtime": req.target.runtime}

    def produce(tmp: Path) -> dict:
        loaded = run.load(req.selection.val, "validate: read held-out images")
        if len(loaded.pixels) == 0:
            return {"images": 0, "note": "no usable validation images"}
        logits = runtimes.artifact_logits(req.target.runtime, tgt.path, tgt.meta, loaded.pixels,
                                          contract.for_artifacts(req.target, req.variant),
                                          lambda label, total, unit="img":
                                          run.progress(f"validate: {label}", total, unit), ("int8",))
        ref = stage_reference(run, req, tgt, loaded)
        logits["fp32"] = np.load(ref.path / "fp32.npy")
        np.savez_compressed(tmp / "logits.npz", fp32=logits["fp32"], int8=logits["int8"], labels=loaded.labels,
                            ids=np.array(loaded.ids))
        return {**metrics.drift(logits["fp32"], logits["int8"], loaded.labels),
                **metrics.per_class(logits["fp32"], logits["int8"], loaded.labels, req.classes.names),
                "skipped_unreadable": loaded.skipped}

    return run.stage("validate", parts, produce, req=req)


MIN_SQNR_DB = 10.0  # a working INT8 model of this family measures 20-30 dB; below this it does not follow FP32
MIN_AGREEMENT = 0.9


def follows_fp32(val: dict, agreement_counts: bool = True) -> list[str]:
    """Warnings when the INT8 model does not follow its FP32 reference, whatever the classes (a broken model
    measured 0.0 dB and KL 0.6 and once shipped with no warning). agreement_counts=False: the images are views full
    of near ties (the embedded recipe) or the weights random, where a low agreement says nothing of the model."""
    if not val.get("images"):
        return []
    sqnr, agree = val.get("logit_sqnr_db", float("inf")), val.get("top1_agreement", 1.0)
    if sqnr >= MIN_SQNR_DB and (agree >= MIN_AGREEMENT or not agreement_counts):
        return []
    return [f"the INT8 model does not follow the FP32 one: logit SQNR {sqnr:.1f} dB (working models measure 20-35), "
            f"top-1 agreement {percent(agree, val.get('top1_agreement_ci95'))}, mean KL {val.get('mean_kl', float('nan')):.3f} on "
            f"{val['images']} validation images; do not ship it: check the weights and the calibration images "
            "(`edgekit analyze` ranks the layers), or try --max-drop / --min-agreement"]


def stage_golden(run: Run, req: BuildRequest, tgt: Hit) -> Hit:
    """The bundle's self-check: the first validation inputs, already preprocessed (uint8 pixels), with the PyTorch
    FP32 logits, so a board with no images still measures drift against PyTorch (`edgekit bench`). The same figures
    with the target runtime on this machine go into the manifest for comparison."""
    parts = {"target": tgt.path.name, "weights": req.weights.sha256, "val": req.selection.val_digest,
             "images": GOLDEN_IMAGES}

    def produce(tmp: Path) -> dict:
        import torch

        from edgekit.models import network as model_mod
        from edgekit.models import weights as weights_mod

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
