"""The onnx route (targets x86 and onnx): PyTorch -> FP32 ONNX -> INT8 QDQ ONNX -> the target backend's artifact
pair (OpenVINO IR, or the QDQ ONNX itself). Each step is a cached stage."""
from __future__ import annotations

from pathlib import Path

from edgekit.builder.cache import Hit
from edgekit.builder.parity import PARITY_IMAGES
from edgekit.builder.request import METHODS, BuildRequest
from edgekit.builder.route import Artifacts
from edgekit.builder.stages import Run
from edgekit.core import contract


def stage_export(run: Run, req: BuildRequest) -> Hit:
    from edgekit.builder.onnx import export

    parts = {"weights": req.weights.sha256, "opset": export.OPSET, "exporter": export.EXPORTER}

    def produce(tmp: Path) -> dict:
        from edgekit.models import network as model_mod
        from edgekit.models import weights as weights_mod

        run.progress("export: PyTorch -> ONNX (opset %d)" % export.OPSET, None)
        net = model_mod.with_pixel_input(weights_mod.build_model(req.variant, req.weights))
        pix_contract = contract.pixels_nchw(req.variant)
        export.export_onnx(net, pix_contract, tmp / "model.fp32.onnx")
        parity = export.validate_export(net, tmp / "model.fp32.onnx", run.calib().pixels[:PARITY_IMAGES],
                                        pix_contract)
        return {"graph": export.graph_report(tmp / "model.fp32.onnx"), "parity": parity, "opset": export.OPSET,
                "exporter": export.EXPORTER}

    return run.stage("export", parts, produce, req=req, per_target=False)  # x86 and onnx share it


def stage_quantize(run: Run, req: BuildRequest, exp: Hit) -> Hit:
    parts = {"export": exp.path.name, "calib": req.selection.calib_digest, "options": req.quant.to_dict()}

    def produce(tmp: Path) -> dict:
        from edgekit.builder.onnx import quantize

        loaded = run.calib()
        advance = run.progress(f"quantize: calibrate ({req.quant.method})", len(loaded.pixels))
        report = quantize.quantize_qdq(exp.path / "model.fp32.onnx", tmp / "model.int8.onnx", loaded.pixels,
                                       contract.pixels_nchw(req.variant), req.quant, advance)
        return {**report, "skipped_unreadable": loaded.skipped, "images_used": len(loaded.pixels)}

    return run.stage("quantize", parts, produce, req=req, per_target=False)


def stage_target(run: Run, req: BuildRequest, exp: Hit, q: Hit) -> Hit:
    parts = {"export": exp.path.name, "quantize": q.path.name, "backend": req.target.backend}

    def produce(tmp: Path) -> dict:
        from edgekit.builder.onnx import backends

        run.progress(f"target {req.target.name}: {req.target.format}", None)
        return backends.BACKENDS[req.target.backend](exp.path / "model.fp32.onnx", q.path / "model.int8.onnx", tmp)

    return run.stage(f"target-{req.target.name}", parts, produce, log_as=f"target:{req.target.name}", req=req)


def stage_mixed(run: Run, req: BuildRequest, exp: Hit, q: Hit, names: list[str]) -> Hit:
    """The INT8 QDQ model with `names` in float (mixed_precision.py); same file name, so the target stage takes it."""
    parts = {"quantize": q.path.name, "float_layers": names}

    def produce(tmp: Path) -> dict:
        import onnx

        from edgekit.builder.onnx import mixed_precision

        m = mixed_precision.float_layers(onnx.load(exp.path / "model.fp32.onnx"),
                                         onnx.load(q.path / "model.int8.onnx"), names)
        onnx.save(m, tmp / "model.int8.onnx")
        return {**q.meta, "float_layers": names}

    return run.stage("mixed", parts, produce, log_as=f"mixed:{len(names)}", req=req, per_target=False)


def stage_tune(run: Run, req: BuildRequest, exp: Hit, q: Hit) -> Hit:
    """INT8-aware fine-tuning of the QDQ model's integers towards the FP32 export (tune.py); the entry holds the
    tuned model.int8.onnx only when it beat the post-training one on the held-out calibration images."""
    parts = {"export": exp.path.name, "quantize": q.path.name, "calib": req.selection.calib_digest,
             "tune": req.tune.to_dict()}

    def produce(tmp: Path) -> dict:
        import onnx

        from edgekit.builder.onnx import tune
        from edgekit.builder.tune import fit

        qm = onnx.load(q.path / "model.int8.onnx")
        fm = onnx.load(exp.path / "model.fp32.onnx")
        student = tune.QDQStudent(qm, ranges=req.tune.range_lr > 0)
        record = fit(run, req, student, tune.Teacher(fm))
        if record["kept"]:
            record["written"] = student.write_back()
            onnx.save(qm, tmp / "model.int8.onnx")
        return {**q.meta, "int8_aware": record}

    return run.stage("int8-aware", parts, produce, req=req, per_target=False)


def stage_sensitivity(run: Run, req: BuildRequest, exp: Hit, q: Hit, images: int) -> Hit:
    """Each int8 layer in float on its own, on the first `images` calibration images (sensitivity.py)."""
    parts = {"quantize": q.path.name, "images": images}

    def produce(tmp: Path) -> dict:
        import onnx

        from edgekit.builder.onnx import mixed_precision, sensitivity
        from edgekit.device import preprocess

        x = preprocess.to_input(run.calib().pixels[:images], contract.pixels_nchw(req.variant))
        fm, qm = onnx.load(exp.path / "model.fp32.onnx"), onnx.load(q.path / "model.int8.onnx")
        advance = run.progress("analyze: each layer in float on its own", len(mixed_precision.quantized_layers(qm)),
                               "layer")
        base, effects = sensitivity.rank_layers(fm, qm, x, advance)
        return {"images": int(len(x)), "image_source": "calibration images", "runtime": "onnxruntime",
                "all_int8": base, "layers": [e.to_dict() for e in effects],
                "activation_ranges": sensitivity.activation_ranges(qm)}

    return run.stage("sensitivity", parts, produce, req=req, per_target=False)


class OnnxRoute:
    name = "onnx"
    methods = METHODS
    raised_to = "float"
    sensitivity_method = ("each int8 layer in float on its own (its weights, bias and input), the rest int8; "
                          "logits against FP32")
    budget_max_macs_share = 1.0  # a float layer costs little here: every layer is a candidate

    def artifacts(self, run: Run, req: BuildRequest) -> Artifacts:
        exp = stage_export(run, req)
        q = stage_quantize(run, req, exp)
        return Artifacts(exp, q, stage_target(run, req, exp, q))

    def sensitivity(self, run: Run, req: BuildRequest, arts: Artifacts, images: int,
                    max_macs_share: float = 1.0) -> Hit:
        return stage_sensitivity(run, req, arts.exp, arts.q, images)

    def tune(self, run: Run, req: BuildRequest, arts: Artifacts) -> tuple[Artifacts, dict]:
        tq = stage_tune(run, req, arts.exp, arts.q)
        record = tq.meta["int8_aware"]
        if not record["kept"]:
            return arts, record
        return Artifacts(arts.exp, tq, stage_target(run, req, arts.exp, tq)), record

    def raise_layers(self, run: Run, req: BuildRequest, arts: Artifacts, chosen: list[dict]) -> Artifacts:
        mq = stage_mixed(run, req, arts.exp, arts.q, [e["layer"] for e in chosen])
        return Artifacts(arts.exp, mq, stage_target(run, req, arts.exp, mq))


ROUTE = OnnxRoute()
