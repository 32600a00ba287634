"""The litert route (target arm64): PyTorch -> float .tflite (litert-torch) -> fully-integer INT8 .tflite
(ai-edge-quantizer with edgekit's ranges, biases and rounding). The quantize entry holds both artifacts, so it is
also the target stage."""
from __future__ import annotations

import shutil
from pathlib import Path

from edgekit.builder.cache import Hit
from edgekit.builder.litert.export import CONVERTER
from edgekit.builder.litert.quantize import METHODS
from edgekit.builder.parity import PARITY_IMAGES
from edgekit.builder.request import BuildRequest
from edgekit.builder.route import Artifacts
from edgekit.builder.stages import Run
from edgekit.core import contract

# a16w8 ops fall back from XNNPACK to TFLite's reference kernels (int16 on lite0's stem conv, 2.8 % of its MACs,
# made it 4.4x slower; on the classifier, 0.3 %, 1.6 % slower): a budget tries only tensors this cheap
INT16_MAX_MACS_SHARE = 0.01


def stage_export(run: Run, req: BuildRequest) -> Hit:
    """PyTorch -> float .tflite (NHWC float pixels), checked against PyTorch."""
    parts = {"weights": req.weights.sha256, "converter": CONVERTER}

    def produce(tmp: Path) -> dict:
        from edgekit.models import network as model_mod
        from edgekit.models import weights as weights_mod
        from edgekit.builder.litert import export

        run.progress("convert: PyTorch -> float .tflite (litert-torch)", None)
        net = model_mod.with_pixel_input(weights_mod.build_model(req.variant, req.weights))
        fp32_contract = contract.for_artifacts(req.target, req.variant)["fp32"]
        export.convert(net, fp32_contract, tmp / "model.fp32.tflite")
        parity = export.validate(net, tmp / "model.fp32.tflite", run.calib().pixels[:PARITY_IMAGES], fp32_contract)
        return {"converter": CONVERTER, "parity": parity}

    return run.stage("convert", parts, produce, req=req)


def stage_quantize(run: Run, req: BuildRequest, conv: Hit, int16: tuple[str, ...] = ()) -> tuple[Hit, Hit]:
    """float .tflite -> INT8 .tflite (with `int16` activation tensors: an accuracy budget's a16w8 layers).
    Returns (calibration view, artifacts view) of the one cache entry."""
    parts = {**({"int16_tensors": list(int16)} if int16 else {}), "convert": conv.path.name,
             "calib": req.selection.calib_digest, "options": req.quant.to_dict(), "allow_float": req.allow_float}

    def produce(tmp: Path) -> dict:
        from edgekit.builder.litert import quantize

        loaded = run.calib()
        contracts = contract.for_artifacts(req.target, req.variant)
        report = quantize.quantize_tflite(conv.path / "model.fp32.tflite", tmp / "model.int8.tflite",
                                          loaded.pixels, contracts["int8"], req.quant, req.allow_float,
                                          run.progress, int16)
        shutil.copyfile(conv.path / "model.fp32.tflite", tmp / "model.fp32.tflite")
        inv = report.pop("inventory")
        output = report.pop("output")
        checks = {"integer_only": report.pop("integer_only"), "float_ops": inv["float_ops"], "ops": inv["ops"],
                  "tensor_types": inv["tensor_types"], "io": inv["io"]}
        return {"calibration": {**report, "skipped_unreadable": loaded.skipped, "images_used": len(loaded.pixels)},
                "artifacts": {"int8": "model.int8.tflite", "fp32": "model.fp32.tflite", "checks": checks,
                              "output": output}}

    hit = run.stage("quantize-tflite", parts, produce, log_as=f"quantize:int16x{len(int16)}" if int16 else "quantize",
                    req=req)
    return Hit(hit.path, hit.meta["calibration"], hit.cached), Hit(hit.path, hit.meta["artifacts"], hit.cached)


def stage_tune(run: Run, req: BuildRequest, q: Hit, tgt: Hit) -> tuple[Hit, Hit]:
    """INT8-aware fine-tuning of the int8 .tflite's integers towards the float .tflite (tune.py). Returns the two views
    of the entry, as stage_quantize; it holds the tuned model only when it beat the post-training one on the held-out
    calibration images."""
    parts = {"quantize": q.path.name, "calib": req.selection.calib_digest, "tune": req.tune.to_dict()}

    def produce(tmp: Path) -> dict:
        from edgekit.builder.litert import graph, tune
        from edgekit.builder.tune import fit

        qg = graph.read(bytearray((q.path / "model.int8.tflite").read_bytes()))
        fg = graph.read((q.path / "model.fp32.tflite").read_bytes())
        student = tune.TFLiteStudent(qg)
        record = fit(run, req, student, lambda x: tune.teacher_logits(fg, x))
        if record["kept"]:
            record["written"] = student.write_back()
            (tmp / "model.int8.tflite").write_bytes(bytes(qg.buf))
            shutil.copyfile(q.path / "model.fp32.tflite", tmp / "model.fp32.tflite")
        return {"calibration": {**q.meta, "int8_aware": record}, "artifacts": tgt.meta}

    hit = run.stage("int8-aware-tflite", parts, produce, log_as="int8-aware", req=req)
    return Hit(hit.path, hit.meta["calibration"], hit.cached), Hit(hit.path, hit.meta["artifacts"], hit.cached)


def stage_sensitivity(run: Run, req: BuildRequest, q: Hit, images: int, max_macs_share: float = 1.0) -> Hit:
    """Each activation tensor of the INT8 .tflite in int16 on its own (those whose a16w8 ops hold at most
    max_macs_share of the MACs), on the first `images` calibration images (sensitivity.py)."""
    parts = {"quantize": q.path.name, "images": images, "max_macs_share": max_macs_share}

    def produce(tmp: Path) -> dict:
        from edgekit.builder.litert import graph, sensitivity

        px = run.calib().pixels[:images]
        fg = graph.read((q.path / "model.fp32.tflite").read_bytes())
        qg = graph.read((q.path / "model.int8.tflite").read_bytes())
        share = sensitivity.candidates(qg, max_macs_share)
        advance = run.progress("analyze: each activation in int16 on its own", len(share), "tensor")
        base, effects = sensitivity.rank_tensors(fg, qg, px, share, advance)
        return {"images": int(len(px)), "image_source": "calibration images",
                "runtime": "edgekit integer simulation (litert/simulate.py)", "all_int8": base,
                "layers": [e.to_dict() for e in effects],
                "activation_ranges": sensitivity.activation_ranges(qg)}

    return run.stage("sensitivity-tflite", parts, produce, log_as="sensitivity", req=req)


class LitertRoute:
    name = "litert"
    methods = METHODS
    raised_to = "int16 activations"
    sensitivity_method = ("each activation tensor in int16 on its own (its producer and consumers a16w8, the "
                          "integer-only higher precision TFLite has), the rest int8; logits against the float .tflite")
    budget_max_macs_share = INT16_MAX_MACS_SHARE

    def artifacts(self, run: Run, req: BuildRequest) -> Artifacts:
        exp = stage_export(run, req)
        q, tgt = stage_quantize(run, req, exp)
        return Artifacts(exp, q, tgt)

    def sensitivity(self, run: Run, req: BuildRequest, arts: Artifacts, images: int,
                    max_macs_share: float = 1.0) -> Hit:
        return stage_sensitivity(run, req, arts.q, images, max_macs_share)

    def tune(self, run: Run, req: BuildRequest, arts: Artifacts) -> tuple[Artifacts, dict]:
        q, tgt = stage_tune(run, req, arts.q, arts.tgt)
        record = q.meta["int8_aware"]
        return (Artifacts(arts.exp, q, tgt) if record["kept"] else arts), record

    def raise_layers(self, run: Run, req: BuildRequest, arts: Artifacts, chosen: list[dict]) -> Artifacts:
        q, tgt = stage_quantize(run, req, arts.exp, tuple(e["tensor"] for e in chosen))
        return Artifacts(arts.exp, q, tgt)


ROUTE = LitertRoute()
