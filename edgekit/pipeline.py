"""`edgekit build`: the staged, cached pipeline, as plain functions.

variant + weights -> export (FP32 ONNX, checked vs PyTorch) -> quantize (INT8 QDQ) -> target backend -> validate
(INT8 vs FP32 on held-out images, with the target's runtime) -> bundle. Each stage is a cache entry keyed by what it
depends on; the bundle is assembled in a temporary directory and renamed into place.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__, arch, backends, cache, contract, export, imagesets, manifest, metrics
from . import litert_export, modelcard, near_ties, preprocess, quantize, runtimes, tflite_quantize
from .budget import MAX_RAISED_LAYERS, MAX_SLOWDOWN, Budget
from .calibration_sets import Selection
from .target_table import Target
from .variants import Variant
from .weights import WeightsRef

MIN_CALIB_IMAGES = 10
PARITY_IMAGES = 8
GOLDEN_FILE = "golden.npz"
MODEL_CARD = "README.md"
GOLDEN_IMAGES = 32  # preprocessed validation inputs carried in the bundle, with PyTorch's logits
RANGE_METHODS = ("percentile", "minmax")  # what a budget tries before any layer goes float
BUDGET_RANKING_IMAGES = 32  # calibration images the budget ranks layers on (edgekit analyze: --images)
RAISED = {"onnx": "float", "litert": "int16 activations"}  # what a budget raises a layer to, per route
# litert: a16w8 ops fall back from XNNPACK to TFLite's reference kernels (int16 on lite0's stem conv, 2.8 % of
# its MACs, made it 4.4x slower; on the classifier, 0.3 %, 1.6 % slower): only tensors this cheap are tried
INT16_MAX_MACS_SHARE = 0.01
LATENCY_RUNS = 40  # per artifact, interleaved, when a budget put layers in float


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class BuildRequest:
    variant: Variant
    target: Target
    weights: WeightsRef
    selection: Selection
    quant: quantize.QuantOptions
    out_dir: Path
    allow_float: bool = False  # arm64: ship ops the integer path cannot handle as float (listed in the manifest)
    budget: Budget | None = None  # accuracy the INT8 artifact must keep; layers go float until it holds


@dataclass
class StageLog:
    """Stage name -> (seconds, cached); the CLI prints it and the manifest records it."""

    stages: dict[str, dict] = field(default_factory=dict)

    def add(self, name: str, seconds: float, cached: bool) -> None:
        key, n = name, 2
        while key in self.stages:  # a budget search runs stages again, for other models
            key, n = f"{name}#{n}", n + 1
        self.stages[key] = {"seconds": round(seconds, 3), "cached": cached}


Progress = Callable[[str, int | None], Callable[[int], None]]  # (stage label, total) -> advance(n)


def _no_progress(label: str, total: int | None) -> Callable[[int], None]:
    return lambda n: None


@functools.lru_cache(maxsize=1)  # asked by every stage key; installed versions do not change within a build
def tool_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "onnx", "onnxscript", "onnxruntime", "openvino", "litert-torch", "ai-edge-quantizer",
                "ai-edge-litert", "numpy", "pillow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                           timeout=5)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "arch": platform.machine(), "os": platform.platform()}


def _load(samples, variant: Variant, label: str, progress: Progress) -> imagesets.Loaded:
    advance = progress(label, len(samples))

    def each(it):
        for s in it:
            yield s
            advance(1)

    return imagesets.load_pixels(samples, contract.preprocessing(variant), each)


def stage_export(req: BuildRequest, c: cache.Cache, log: StageLog, progress: Progress,
                 calib_pixels: Callable[[], np.ndarray]) -> cache.Hit:
    tools = tool_versions()
    parts = {"variant": req.variant.name, "weights": req.weights.sha256, "opset": export.OPSET,
             "exporter": export.EXPORTER, "torch": tools.get("torch"), "onnx": tools.get("onnx"),
             "onnxscript": tools.get("onnxscript"), "onnxruntime": tools.get("onnxruntime"),
             "code": cache.code_digest("model", "weights", "arch", "export", "contract")}

    def produce(tmp: Path) -> dict:
        from . import model as model_mod
        from . import weights as weights_mod

        progress("export: PyTorch -> ONNX (opset %d)" % export.OPSET, None)
        net = model_mod.with_pixel_input(weights_mod.build_model(req.variant, req.weights))
        pix_contract = contract.pixels_nchw(req.variant)
        export.export_onnx(net, pix_contract, tmp / "model.fp32.onnx")
        parity = export.validate_export(net, tmp / "model.fp32.onnx", calib_pixels()[:PARITY_IMAGES], pix_contract)
        return {"graph": export.graph_report(tmp / "model.fp32.onnx"), "parity": parity, "opset": export.OPSET,
                "exporter": export.EXPORTER}

    t = time.perf_counter()
    hit = c.run("export", parts, produce)
    log.add("export", time.perf_counter() - t, hit.cached)
    return hit


def stage_quantize(req: BuildRequest, exp: cache.Hit, c: cache.Cache, log: StageLog, progress: Progress,
                   calib: Callable[[], imagesets.Loaded]) -> cache.Hit:
    parts = {"export": exp.path.name, "calib": req.selection.calib_digest, "options": req.quant.to_dict(),
             "onnxruntime": tool_versions().get("onnxruntime"),
             "code": cache.code_digest("quantize", "saturation", "graph_sim", "weight_rounding", "preprocess",
                                      "imagesets")}

    def produce(tmp: Path) -> dict:
        loaded = calib()
        advance = progress(f"quantize: calibrate ({req.quant.method})", len(loaded.pixels))
        report = quantize.quantize_qdq(exp.path / "model.fp32.onnx", tmp / "model.int8.onnx", loaded.pixels,
                                       contract.pixels_nchw(req.variant), req.quant, advance)
        return {**report, "skipped_unreadable": loaded.skipped, "images_used": len(loaded.pixels)}

    t = time.perf_counter()
    hit = c.run("quantize", parts, produce)
    log.add("quantize", time.perf_counter() - t, hit.cached)
    return hit


def stage_sensitivity(req: BuildRequest, exp: cache.Hit, q: cache.Hit, c: cache.Cache, log: StageLog,
                      progress: Progress, calib: Callable[[], imagesets.Loaded], images: int) -> cache.Hit:
    """Each int8 layer in float on its own, on the first `images` calibration images (sensitivity.py)."""
    parts = {"quantize": q.path.name, "images": images, "onnxruntime": tool_versions().get("onnxruntime"),
             "code": cache.code_digest("sensitivity", "mixed_precision", "metrics", "preprocess")}

    def produce(tmp: Path) -> dict:
        import onnx

        from . import mixed_precision, sensitivity

        loaded = calib()
        x = preprocess.to_input(loaded.pixels[:images], contract.pixels_nchw(req.variant))
        fm, qm = onnx.load(exp.path / "model.fp32.onnx"), onnx.load(q.path / "model.int8.onnx")
        advance = progress("analyze: each layer in float on its own", len(mixed_precision.quantized_layers(qm)))
        base, effects = sensitivity.rank_layers(fm, qm, x, advance)
        return {"images": int(len(x)), "image_source": "calibration images", "runtime": "onnxruntime",
                "all_int8": base, "layers": [e.to_dict() for e in effects],
                "activation_ranges": sensitivity.activation_ranges(qm)}

    t = time.perf_counter()
    hit = c.run("sensitivity", parts, produce)
    log.add("sensitivity", time.perf_counter() - t, hit.cached)
    return hit


def stage_sensitivity_tflite(req: BuildRequest, q: cache.Hit, c: cache.Cache, log: StageLog, progress: Progress,
                             calib: Callable[[], imagesets.Loaded], images: int, max_macs_share: float = 1.0
                             ) -> cache.Hit:
    """Each activation tensor of the INT8 .tflite in int16 on its own (those whose a16w8 ops hold at most
    max_macs_share of the MACs), on the first `images` calibration images (tflite_sensitivity.py)."""
    parts = {"quantize": q.path.name, "images": images, "max_macs_share": max_macs_share,
             "code": cache.code_digest("tflite_sensitivity", "tflite_sim", "tflite_graph", "metrics")}

    def produce(tmp: Path) -> dict:
        from . import tflite_graph, tflite_sensitivity

        px = calib().pixels[:images]
        fg = tflite_graph.read((q.path / "model.fp32.tflite").read_bytes())
        qg = tflite_graph.read((q.path / "model.int8.tflite").read_bytes())
        share = tflite_sensitivity.candidates(qg, max_macs_share)
        advance = progress("analyze: each activation in int16 on its own", len(share))
        base, effects = tflite_sensitivity.rank_tensors(fg, qg, px, share, advance)
        return {"images": int(len(px)), "image_source": "calibration images",
                "runtime": "edgekit integer simulation (tflite_sim)", "all_int8": base,
                "layers": [e.to_dict() for e in effects],
                "activation_ranges": tflite_sensitivity.activation_ranges(qg)}

    t = time.perf_counter()
    hit = c.run("sensitivity-tflite", parts, produce)
    log.add("sensitivity", time.perf_counter() - t, hit.cached)
    return hit


def stage_mixed(req: BuildRequest, exp: cache.Hit, q: cache.Hit, names: list[str], c: cache.Cache,
                log: StageLog) -> cache.Hit:
    """The INT8 QDQ model with `names` in float (mixed_precision.py); same file name, so the target stage takes it."""
    parts = {"quantize": q.path.name, "float_layers": names, "code": cache.code_digest("mixed_precision")}

    def produce(tmp: Path) -> dict:
        import onnx

        from . import mixed_precision

        m = mixed_precision.float_layers(onnx.load(exp.path / "model.fp32.onnx"),
                                         onnx.load(q.path / "model.int8.onnx"), names)
        onnx.save(m, tmp / "model.int8.onnx")
        return {**q.meta, "float_layers": names}

    t = time.perf_counter()
    hit = c.run("mixed", parts, produce)
    log.add(f"mixed:{len(names)}", time.perf_counter() - t, hit.cached)
    return hit


def stage_target(req: BuildRequest, exp: cache.Hit, q: cache.Hit, c: cache.Cache, log: StageLog,
                 progress: Progress) -> cache.Hit:
    backend = backends.BACKENDS[req.target.backend]
    parts = {"export": exp.path.name, "quantize": q.path.name, "target": req.target.name,
             "backend": req.target.backend, "tools": tool_versions(), "code": cache.code_digest("backends", "runtimes", "mixed_precision")}

    def produce(tmp: Path) -> dict:
        progress(f"target {req.target.name}: {req.target.format}", None)
        return backend(exp.path / "model.fp32.onnx", q.path / "model.int8.onnx", tmp)

    t = time.perf_counter()
    hit = c.run(f"target-{req.target.name}", parts, produce)
    log.add(f"target:{req.target.name}", time.perf_counter() - t, hit.cached)
    return hit


def stage_convert(req: BuildRequest, c: cache.Cache, log: StageLog, progress: Progress,
                  calib_pixels: Callable[[], np.ndarray]) -> cache.Hit:
    """litert route: PyTorch -> float .tflite (NHWC float pixels), checked against PyTorch."""
    tools = tool_versions()
    parts = {"variant": req.variant.name, "weights": req.weights.sha256, "converter": litert_export.CONVERTER,
             "tools": {k: tools.get(k) for k in ("torch", "litert-torch", "ai-edge-litert")},
             "code": cache.code_digest("model", "weights", "arch", "litert_export", "export", "contract")}

    def produce(tmp: Path) -> dict:
        from . import model as model_mod
        from . import weights as weights_mod

        progress("convert: PyTorch -> float .tflite (litert-torch)", None)
        net = model_mod.with_pixel_input(weights_mod.build_model(req.variant, req.weights))
        fp32_contract = contract.for_artifacts(req.target, req.variant)["fp32"]
        litert_export.convert(net, fp32_contract, tmp / "model.fp32.tflite")
        parity = litert_export.validate(net, tmp / "model.fp32.tflite", calib_pixels()[:PARITY_IMAGES],
                                        fp32_contract)
        return {"converter": litert_export.CONVERTER, "parity": parity}

    t = time.perf_counter()
    hit = c.run("convert", parts, produce)
    log.add("convert", time.perf_counter() - t, hit.cached)
    return hit


def stage_quantize_tflite(req: BuildRequest, conv: cache.Hit, c: cache.Cache, log: StageLog, progress: Progress,
                          calib: Callable[[], imagesets.Loaded], int16: tuple[str, ...] = ()
                          ) -> tuple[cache.Hit, cache.Hit]:
    """litert route: float .tflite -> INT8 .tflite (with `int16` activation tensors: an accuracy budget's a16w8
    layers); the entry holds both artifacts, so it is also the target stage.
    Returns (calibration view, artifacts view) of the one cache entry."""
    parts = {**({"int16_tensors": list(int16)} if int16 else {}), "convert": conv.path.name,
             "calib": req.selection.calib_digest, "options": req.quant.to_dict(), "allow_float": req.allow_float,
             "tools": {k: tool_versions().get(k) for k in ("ai-edge-quantizer", "ai-edge-litert", "torch")},
             "code": cache.code_digest("tflite_quantize", "tflite_sim", "weight_rounding", "tflite_graph", "quantize",
                                      "arch", "litert_export", "imagesets")}

    def produce(tmp: Path) -> dict:
        loaded = calib()
        contracts = contract.for_artifacts(req.target, req.variant)
        report = tflite_quantize.quantize_tflite(conv.path / "model.fp32.tflite", tmp / "model.int8.tflite",
                                                 loaded.pixels, contracts["int8"], req.quant, req.allow_float,
                                                 progress, int16)
        shutil.copyfile(conv.path / "model.fp32.tflite", tmp / "model.fp32.tflite")
        inv = report.pop("inventory")
        output = report.pop("output")
        checks = {"integer_only": report.pop("integer_only"), "float_ops": inv["float_ops"], "ops": inv["ops"],
                  "tensor_types": inv["tensor_types"], "io": inv["io"]}
        return {"calibration": {**report, "skipped_unreadable": loaded.skipped, "images_used": len(loaded.pixels)},
                "artifacts": {"int8": "model.int8.tflite", "fp32": "model.fp32.tflite", "checks": checks,
                              "output": output}}

    t = time.perf_counter()
    hit = c.run("quantize-tflite", parts, produce)
    log.add(f"quantize:int16x{len(int16)}" if int16 else "quantize", time.perf_counter() - t, hit.cached)
    return (cache.Hit(hit.path, hit.meta["calibration"], hit.cached),
            cache.Hit(hit.path, hit.meta["artifacts"], hit.cached))


def stage_validate(req: BuildRequest, tgt: cache.Hit, c: cache.Cache, log: StageLog, progress: Progress) -> cache.Hit:
    parts = {"target": tgt.path.name, "val": req.selection.val_digest, "runtime": req.target.runtime,
             "code": cache.code_digest("metrics", "runtimes", "preprocess", "imagesets", "contract")}

    def produce(tmp: Path) -> dict:
        loaded = _load(req.selection.val, req.variant, "validate: read held-out images", progress)
        if len(loaded.pixels) == 0:
            return {"images": 0, "note": "no usable validation images"}
        logits = runtimes.artifact_logits(req.target.runtime, tgt.path, tgt.meta, loaded.pixels,
                                          contract.for_artifacts(req.target, req.variant),
                                          lambda label, total: progress(f"validate: {label}", total))
        np.savez_compressed(tmp / "logits.npz", fp32=logits["fp32"], int8=logits["int8"], labels=loaded.labels,
                            ids=np.array(loaded.ids))
        return {**metrics.drift(logits["fp32"], logits["int8"], loaded.labels),
                "skipped_unreadable": loaded.skipped}

    t = time.perf_counter()
    hit = c.run("validate", parts, produce)
    log.add("validate", time.perf_counter() - t, hit.cached)
    return hit


def stage_golden(req: BuildRequest, tgt: cache.Hit, c: cache.Cache, log: StageLog, progress: Progress) -> cache.Hit:
    """The bundle's self-check: the first validation inputs, already preprocessed (uint8 pixels), with the PyTorch
    FP32 logits, so a board with no images still measures drift against PyTorch (`edgekit bench`). The same figures
    with the target runtime on this machine go into the manifest for comparison."""
    parts = {"target": tgt.path.name, "weights": req.weights.sha256, "val": req.selection.val_digest,
             "images": GOLDEN_IMAGES, "torch": tool_versions().get("torch"),
             "code": cache.code_digest("model", "weights", "arch", "contract", "preprocess", "imagesets", "metrics",
                                       "runtimes")}

    def produce(tmp: Path) -> dict:
        import torch

        from . import model as model_mod
        from . import weights as weights_mod

        loaded = _load(req.selection.val[:GOLDEN_IMAGES], req.variant, "golden set: PyTorch FP32 logits", progress)
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

    t = time.perf_counter()
    hit = c.run("golden", parts, produce)
    log.add("golden", time.perf_counter() - t, hit.cached)
    return hit


def _io_blocks(req: BuildRequest, tgt: cache.Hit) -> dict:
    """The manifest's input contract (of the INT8 artifact; the FP32 reference's too where it differs) and output."""
    contracts = contract.for_artifacts(req.target, req.variant)
    out = {"name": export.OUTPUT_NAME, "shape": [1, req.variant.num_classes], "dtype": "float32", "quantization": None,
           "meaning": "logits (before softmax) over the ImageNet-1k class index in labels.txt"}
    out.update(tgt.meta.get("output") or {})
    if out["quantization"]:
        out["dequantize"] = "logits = (q - zero_point) * scale; edgekit's runners return dequantized float32 logits"
    doc = {"input": contracts["int8"], "output": out}
    if contracts["fp32"] != contracts["int8"]:
        doc["fp32_input"] = contracts["fp32"]
    return doc


def bundle_name(variant: Variant, target: Target) -> str:
    return f"{variant.name}-{target.name}-int8"


def write_bundle(req: BuildRequest, exp: cache.Hit, q: cache.Hit, tgt: cache.Hit, val: cache.Hit,
                 gold: cache.Hit, log: StageLog, class_names: list[str], class_wnids: list[str],
                 mixed: dict | None = None) -> Path:
    out_root = req.out_dir
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out_root))
    except OSError as e:
        raise BuildError(f"cannot write to output directory {out_root}: {e.strerror}") from None
    final = out_root / bundle_name(req.variant, req.target)
    try:
        for name in (tgt.meta["int8"], tgt.meta["fp32"]):
            for f in tgt.path.glob(Path(name).stem + ".*"):
                shutil.copyfile(f, tmp / f.name)
        (tmp / manifest.LABELS).write_text("\n".join(class_names) + "\n")
        if gold.meta.get("images"):
            shutil.copyfile(gold.path / GOLDEN_FILE, tmp / GOLDEN_FILE)
        v = req.variant
        weights = {"origin": req.weights.origin, "sha256": req.weights.sha256, "pretrained": req.weights.pretrained}
        if not req.weights.pretrained:
            weights["warning"] = ("RANDOM WEIGHTS: this bundle was built with --random-weights; it is not a trained "
                                  "classifier and its accuracy figures are meaningless")
        doc = {
            "name": final.name,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "edgekit": {"version": __version__, "git_commit": git_commit()},
            "variant": {**v.to_dict(), "macs": arch.count_macs(v)},
            "target": {"name": req.target.name, "format": req.target.format, "runtime": req.target.runtime,
                       "device_install": req.target.device_install},
            "precision": f"int8 with {len(mixed['layers'])} layer(s) in {mixed['raised_to']}"
            if mixed and mixed["layers"] else "int8",
            "mixed_precision": mixed,
            "artifacts": {"int8": tgt.meta["int8"], "fp32": tgt.meta["fp32"]},
            **_io_blocks(req, tgt),
            "preprocessing": contract.preprocessing(v),
            "labels": manifest.LABELS,
            "class_names": class_names,
            "class_wnids": class_wnids,
            "weights": weights,
            "export": exp.meta,
            "calibration": {"source": req.selection.source, "digest": req.selection.calib_digest,
                            "requested_images": len(req.selection.calib), **req.quant.to_dict(), **q.meta},
            "validation": {"source": req.selection.val_source, "digest": req.selection.val_digest,
                           "runtime": req.target.runtime, **val.meta},
            "golden": gold.meta,
            "backend_checks": tgt.meta.get("checks", {}),
            "timings": log.stages,
            "tools": tool_versions(),
            "build_machine": machine(),
        }
        (tmp / MODEL_CARD).write_text(modelcard.render(doc))
        manifest.write(tmp, doc)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a bundle is meant to be read and shipped
        if final.exists():
            old = out_root / f".old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


@dataclass
class Stages:
    """What the stages up to validation produced (cache views); `mixed` says what an accuracy budget changed."""
    exp: cache.Hit
    q: cache.Hit
    tgt: cache.Hit
    val: cache.Hit
    quant: quantize.QuantOptions
    mixed: dict | None = None


def _calib_loader(req: BuildRequest, progress: Progress) -> Callable[[], imagesets.Loaded]:
    loaded: dict[str, imagesets.Loaded] = {}

    def calib() -> imagesets.Loaded:
        if "calib" not in loaded:
            got = _load(req.selection.calib, req.variant, "read calibration images", progress)
            if len(got.pixels) < MIN_CALIB_IMAGES:
                raise BuildError(f"only {len(got.pixels)} usable calibration image(s) in {req.selection.source} "
                                 f"({len(got.skipped)} unreadable); at least {MIN_CALIB_IMAGES} are needed")
            loaded["calib"] = got
        return loaded["calib"]

    return calib


def quantized_stages(req: BuildRequest, c: cache.Cache, log: StageLog, progress: Progress,
                     calib: Callable[[], imagesets.Loaded]) -> tuple[cache.Hit, cache.Hit, cache.Hit]:
    """export/convert -> quantize -> target artifacts, per the target's route."""
    if req.target.route == "litert" and req.quant.method not in tflite_quantize.METHODS:
        raise BuildError(f"calibration method '{req.quant.method}' is not available for target {req.target.name}: "
                         f"choose one of {', '.join(tflite_quantize.METHODS)}")
    if req.target.route == "litert":
        exp = stage_convert(req, c, log, progress, lambda: calib().pixels)
        q, tgt = stage_quantize_tflite(req, exp, c, log, progress, calib)
    else:
        exp = stage_export(req, c, log, progress, lambda: calib().pixels)
        q = stage_quantize(req, exp, c, log, progress, calib)
        tgt = stage_target(req, exp, q, c, log, progress)
    return exp, q, tgt


def _brief(d: dict) -> dict:
    return {k: d.get(k) for k in ("top1_agreement", "top1_drop_points", "logit_sqnr_db")}


def _score(d: dict) -> tuple:
    return (d.get("top1_agreement") or 0, -(d.get("top1_drop_points") or 0), d.get("logit_sqnr_db") or 0)


def meet_budget(req: BuildRequest, st: Stages, c: cache.Cache, log: StageLog, progress: Progress,
                calib: Callable[[], imagesets.Loaded]) -> Stages:
    """Make the INT8 artifact keep the accuracy budget on the validation images, cheapest change first:
    1. the other activation-range methods (still plain int8, no latency cost), each validated with the target's
       runtime;
    2. on the best of those, the layers that recover most (sensitivity ranking, on calibration images) raised to
       the higher precision the target runs (RAISED), one more at a time, each model validated, up to
       MAX_RAISED_LAYERS.
    BuildError naming the most sensitive layers if nothing holds."""
    budget = req.budget
    problems = budget.problems(st.val.meta)
    tried = [{"method": st.quant.method, "raised_layers": 0, **_brief(st.val.meta)}]
    vals = [st.val]  # every model's validation: the near-tie analysis reads their logits
    if not problems:
        st.mixed = _budget_block(budget, None, [], tried, vals)
        return st
    name = f"{req.variant.name} on {req.target.name}"
    best = st
    for method in RANGE_METHODS:
        if method == st.quant.method or (req.target.route == "litert" and method not in tflite_quantize.METHODS):
            continue
        alt = dataclasses.replace(req, quant=dataclasses.replace(req.quant, method=method))
        exp, q, tgt = quantized_stages(alt, c, log, progress, calib)
        val = stage_validate(alt, tgt, c, log, progress)
        vals.append(val)
        tried.append({"method": method, "raised_layers": 0, **_brief(val.meta)})
        cand = Stages(exp, q, tgt, val, alt.quant)
        if not budget.problems(val.meta):
            cand.mixed = _budget_block(budget, None, [], tried, vals)
            return cand
        if _score(val.meta) > _score(best.val.meta):
            best = cand
    breq = dataclasses.replace(req, quant=best.quant)
    raised_to = RAISED[req.target.route]
    if req.target.route == "litert":
        sens = stage_sensitivity_tflite(breq, best.q, c, log, progress, calib, BUDGET_RANKING_IMAGES,
                                        INT16_MAX_MACS_SHARE)

        def raise_layers(chosen: list[dict]) -> tuple[cache.Hit, cache.Hit]:
            return stage_quantize_tflite(breq, best.exp, c, log, progress, calib, tuple(e["tensor"] for e in chosen))
    else:
        sens = stage_sensitivity(breq, best.exp, best.q, c, log, progress, calib, BUDGET_RANKING_IMAGES)

        def raise_layers(chosen: list[dict]) -> tuple[cache.Hit, cache.Hit]:
            mq = stage_mixed(breq, best.exp, best.q, [e["layer"] for e in chosen], c, log)
            return mq, stage_target(breq, best.exp, mq, c, log, progress)
    ranked = [e for e in sens.meta["layers"] if e["gain_db"] > 0][:MAX_RAISED_LAYERS]
    for k in range(1, len(ranked) + 1):
        mq, tgt = raise_layers(ranked[:k])
        val = stage_validate(breq, tgt, c, log, progress)
        vals.append(val)
        tried.append({"method": best.quant.method, "raised_layers": k, **_brief(val.meta)})
        if not budget.problems(val.meta):
            return Stages(best.exp, mq, tgt, val, best.quant, {
                **_budget_block(budget, raised_to, ranked[:k], tried, vals),
                "ranking": {k_: sens.meta[k_] for k_ in ("images", "image_source", "runtime")},
                "plain_int8_target": best.tgt})
    top = ", ".join(f"{e['layer']} (+{e['gain_db']:.2f} dB)" for e in ranked[:3]) or "no layer recovers any SQNR"
    best_i = max(range(len(tried)), key=lambda i: _score(tried[i]))  # the noise and the message: the same model
    ties = _near_ties(budget, vals, best_i)
    report = write_json(req.out_dir / f"{bundle_name(req.variant, req.target)}.budget-not-met.json",
                        {"variant": req.variant.name, "target": req.target.name, "budget": budget.to_dict(),
                         "problems": problems, "raised_to": raised_to, "search": tried, "near_ties": ties,
                         "ranking": sens.meta})
    raise BuildError(f"{name}: accuracy budget {budget.describe()} not met ({'; '.join(problems)}); tried "
                     f"{_tried(tried, best_i, raised_to)}; most sensitive: {top}; {_describe_ties(ties)}; "
                     f"search, near ties and per-layer ranking: {report}")


def _budget_block(budget: Budget, raised_to: str | None, layers: list[dict], tried: list[dict],
                  vals: list[cache.Hit]) -> dict:
    """The manifest's record of a budget that held, on the last model validated."""
    return {"budget": budget.to_dict(), "raised_to": raised_to, "layers": layers, "search": tried,
            "near_ties": _near_ties(budget, vals, len(vals) - 1)}


def _near_ties(budget: Budget, vals: list[cache.Hit], chosen: int) -> dict | None:
    """near_ties.analyse over every model the search validated; the noise is measured on vals[chosen]."""
    runs = [np.load(v.path / "logits.npz") for v in vals if (v.path / "logits.npz").exists()]
    if len(runs) != len(vals):  # no usable validation images
        return None
    fp32 = runs[0]["fp32"]
    return near_ties.analyse(fp32, runs[chosen]["int8"], [r["int8"] for r in runs], list(runs[0]["ids"]),
                             budget.allowed_disagreements(len(fp32)), runs[0]["labels"])


def _describe_ties(t: dict | None) -> str:
    if not t:
        return "no validation logits to analyse"
    most = ", ".join(f"{f['id']} (FP32 top-2 margin {f['fp32_margin']:.3f}, {f['flipped_in_models']}/{t['models']})"
                     for f in t["flipped"][:3])
    allowed = t.get("allowed_disagreements")
    return (f"near ties: {t['expected_disagreements']:.1f} disagreements expected at the INT8 noise (sd "
            f"{100 * t['relative_margin_noise']:.1f} % of the top-1 logit on the top-2 margin)" +
            (f" against {allowed} allowed" if allowed is not None else "") +
            (f", flipped most: {most}" if most else ""))


def _tried(tried: list[dict], best_i: int, raised_to: str) -> str:
    best = tried[best_i]
    return (f"{len(tried)} models, best {100 * (best['top1_agreement'] or 0):.2f} % agreement, drop "
            f"{best['top1_drop_points']:.2f} points ({best['method']}, {best['raised_layers']} layer(s) in "
            f"{raised_to})")


def mixed_latency(req: BuildRequest, plain: cache.Hit, mixed: cache.Hit, progress: Progress) -> dict:
    """What the float layers cost: plain int8 and mixed artifacts timed interleaved with the target's runtime
    (1 thread and the runtime's default), on one preprocessed image."""
    from . import bench

    x = preprocess.to_input(np.full((1, req.variant.input_size, req.variant.input_size, 3), 128, np.uint8),
                            contract.for_artifacts(req.target, req.variant)["int8"])
    out = {}
    for threads in (1, None):
        runners = {k: runtimes.open_runner(req.target.runtime, h.path / h.meta["int8"], threads=threads)
                   for k, h in (("int8", plain), ("mixed", mixed))}
        tick = progress(f"budget: latency, {threads or 'default'} thread(s)", LATENCY_RUNS)
        r = bench.interleaved(runners, {k: x for k in runners}, LATENCY_RUNS, 5, tick)
        out[f"threads_{threads or 'default'}"] = {"int8_p50_ms": round(r["int8"]["p50_ms"], 3),
                                                  "mixed_p50_ms": round(r["mixed"]["p50_ms"], 3),
                                                  "ratio": round(r["mixed"]["p50_ms"] / r["int8"]["p50_ms"], 3)}
    return out


def build(req: BuildRequest, c: cache.Cache, class_names: list[str], class_wnids: list[str],
          progress: Progress = _no_progress) -> tuple[Path, dict]:
    """Run every stage (cached) and write the bundle; returns its path and manifest."""
    log = StageLog()
    calib = _calib_loader(req, progress)
    t0 = time.perf_counter()
    exp, q, tgt = quantized_stages(req, c, log, progress, calib)
    st = Stages(exp, q, tgt, stage_validate(req, tgt, c, log, progress), req.quant)
    if req.budget is not None:
        st = meet_budget(req, st, c, log, progress, calib)
        if st.mixed is not None and st.mixed["layers"]:
            st.mixed["latency"] = mixed_latency(req, st.mixed.pop("plain_int8_target"), st.tgt, progress)
            ratio = st.mixed["latency"]["threads_1"]["ratio"]
            if ratio > MAX_SLOWDOWN:
                warnings.warn(f"the budget's layers in {st.mixed['raised_to']} make {req.variant.name} on "
                              f"{req.target.name} x{ratio:.2f} "
                              f"slower than plain int8 (limit x{MAX_SLOWDOWN:.2f}); the manifest records both")
    gold = stage_golden(req, st.tgt, c, log, progress)
    log.stages["total_seconds_before_bundle"] = round(time.perf_counter() - t0, 3)
    path = write_bundle(dataclasses.replace(req, quant=st.quant), st.exp, st.q, st.tgt, st.val, gold, log,
                        class_names, class_wnids, st.mixed)
    m = json.loads((path / manifest.MANIFEST).read_text())
    return path, m


def analyze(req: BuildRequest, c: cache.Cache, images: int, progress: Progress = _no_progress) -> dict:
    """`edgekit analyze`: export and quantize (cached, as a build would), then the per-layer sensitivity report."""
    log = StageLog()
    calib = _calib_loader(req, progress)
    if req.target.route == "litert":
        exp = stage_convert(req, c, log, progress, lambda: calib().pixels)
        q, _ = stage_quantize_tflite(req, exp, c, log, progress, calib)
        sens = stage_sensitivity_tflite(req, q, c, log, progress, calib, images)
        method = ("each activation tensor in int16 on its own (its producer and consumers a16w8, the integer-only "
                  "higher precision TFLite has), the rest int8; logits against the float .tflite")
    else:
        exp = stage_export(req, c, log, progress, lambda: calib().pixels)
        q = stage_quantize(req, exp, c, log, progress, calib)
        sens = stage_sensitivity(req, exp, q, c, log, progress, calib, images)
        method = "each int8 layer in float on its own (its weights, bias and input), the rest int8; logits against FP32"
    return {"variant": req.variant.name, "target": req.target.name, "calibration": {
                "source": req.selection.source, "digest": req.selection.calib_digest, **req.quant.to_dict()},
            "method": method, **sens.meta, "timings": log.stages, "tools": tool_versions()}


def write_json(path: Path, doc: dict) -> Path:
    """Written to a temporary file beside `path`, then renamed: never a half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
