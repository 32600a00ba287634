"""Quantize (litert route): float .tflite -> fully-integer INT8 .tflite, then checked to be integer-only.

ai-edge-quantizer's `static_wi8_ai8` recipe does the rewriting (int8 per-channel symmetric weights, int8 asymmetric
activations, int32 biases, int8 input and output). What edgekit changes, each measured on lite0 (300 held-out
ImageNet images, logit SQNR against the float .tflite):
- Activation ranges: the quantizer's calibration merges each image's min/max into a moving average (smoothing 0.95),
  so ranges follow the last ~20 images and clip the rest (logits clipped at 9.9 where they reach 14). edgekit
  computes the ranges itself over all calibration images (global min/max, or the 99.999th percentiles, the arm64
  default: 24.7 -> 25.7 dB) and hands them over as the calibration result.
- Input grid: pinned to scale 1, zero point -128, so the artifact takes raw pixels exactly (contract.pixels_nhwc_int8).
- Biases: recomputed from the float model and saturated instead of wrapped (the quantizer overflows int32 in channels
  whose folded weights are ~0: 84 such channels in lite0), then sequential bias correction (simulate.py):
  17.4 -> 23.9 dB.
- Weights of the stem and depthwise layers: re-rounded for the inputs they see (rounding.py), in the same
  sequential pass, before each layer's bias correction: 23.8 -> 24.7 dB.
- An accuracy budget may hold chosen activation tensors in int16 (`int16`): their producer and consumers become
  a16w8 ops (int64 biases), still integer-only (sensitivity.py says which tensors are worth it).
"""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Callable

import numpy as np

from edgekit.builder.litert import graph
from edgekit.builder.litert.export import interpreter, quiet_native_logs
from edgekit.builder.request import BIAS_IMAGES, QuantOptions
from edgekit.errors import QuantizeError
from edgekit.progress import Progress, no_progress

METHODS = ("minmax", "percentile")
RECIPE = "ai-edge-quantizer static_wi8_ai8"



def _aeq_keys(float_model: bytes, pixels: np.ndarray, fg: graph.Graph, int16: tuple[str, ...] = ()):
    """The quantizer and the tensors it wants ranges for (its own calibration on one image gives the structure).
    `int16`: activation tensors to hold in int16; their producer and consumers become a16w8 ops (the quantizer
    puts QUANTIZE ops where those meet int8 ops)."""
    from ai_edge_quantizer import quantizer, recipe

    qt = quantizer.Quantizer(float_model)
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    for kind, scope in a16w8_ops(fg, int16):
        # the quantizer's op scope is its output names + ";" (the graph's OUTPUT: the output tensor's name)
        qt.add_static_config(regex=f"^{re.escape(scope)};$", operation_name=kind, activation_num_bits=16,
                             weight_num_bits=8)
    it = interpreter(float_model)
    sig = it.get_signature_list()
    key = next(iter(sig))
    arg = sig[key]["inputs"][0]
    with quiet_native_logs(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cal = qt.calibrate({key: [{arg: pixels[:1].astype(np.float32)}]}, num_threads=2)
    return qt, cal


class _Tails:
    """The k largest and k smallest values seen so far, exactly. Each new array is first cut at the current k-th
    value, so after the first images almost nothing is copied or partitioned (a full partition per tensor and image
    made the percentile pass 3x slower than min/max)."""

    def __init__(self, k: int):
        self.k = k
        self.low = np.empty(0, np.float32)
        self.high = np.empty(0, np.float32)

    def add(self, a: np.ndarray) -> None:
        f = a.ravel()
        if len(self.high) >= self.k:
            hi_new, lo_new = f[f > self.high[0]], f[f < -self.low[0]]
        else:
            hi_new = lo_new = f
        self.high = self._keep(np.concatenate([self.high, hi_new]))
        self.low = self._keep(np.concatenate([self.low, -lo_new]))

    def _keep(self, v: np.ndarray) -> np.ndarray:
        if len(v) > self.k:
            v = np.partition(v, len(v) - self.k)[len(v) - self.k:]
        return np.sort(v)  # v[0] is the k-th largest: the next image's cut

    def range(self) -> tuple[float, float]:
        return -float(self.low[0]), float(self.high[0])


def activation_ranges(float_model: bytes, names: list[str], pixels: np.ndarray, opts: QuantOptions,
                      progress: Callable[[int], None] | None = None) -> dict[str, tuple[float, float]]:
    """Per-tensor (min, max) over all images: global extremes, or the opts.percentile tails (exact)."""
    it = interpreter(float_model, preserve=True)
    index = {t["name"]: t["index"] for t in it.get_tensor_details()}
    inp = it.get_input_details()[0]["index"]
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    tails = {}
    if opts.method == "percentile":
        for n in names:
            size = int(np.prod(it.get_tensor(index[n]).shape))
            tails[n] = _Tails(max(1, int(np.ceil(size * len(pixels) * (1 - opts.percentile / 100)))))
    for i in range(len(pixels)):
        it.set_tensor(inp, pixels[i:i + 1].astype(np.float32))
        it.invoke()
        for n in names:
            a = it.get_tensor(index[n])
            if n in tails:
                tails[n].add(a)
            else:
                lo[n], hi[n] = min(lo[n], float(a.min())), max(hi[n], float(a.max()))
        if progress:
            progress(1)
    for n, t in tails.items():
        lo[n], hi[n] = t.range()
    return {n: (lo[n], hi[n]) for n in names}


def a16w8_ops(fg: graph.Graph, int16: tuple[str, ...]) -> list[tuple[str, str]]:
    """(op kind, output name) of every op that must run a16w8 for the `int16` tensors to stay int16: each one's
    producer and all its consumers ("OUTPUT" for a graph output, so the artifact returns it in int16)."""
    names = {t.name: t.index for t in fg.tensors}
    out: list[tuple[str, str]] = []
    for name in int16:
        if name not in names:
            raise QuantizeError(f"no tensor named '{name}' in the float model: cannot hold it in int16")
        j = names[name]
        out += [(op.kind, fg.tensors[op.outputs[0]].name) for op in graph.touching(fg, j)]
        if j in fg.outputs:
            out.append(("OUTPUT", name))
    return list(dict.fromkeys(out))


def requantize_biases(fg: graph.Graph, qg: graph.Graph) -> int:
    """Integer biases from the float biases, saturated; returns how many channels did not fit."""
    from edgekit.builder.litert.simulate import pairs

    clamped = 0
    for fop, qop in pairs(fg, qg):
        if fop is not None and qop.kind in graph.LAYERS and len(qop.inputs) > 2 and qop.inputs[2] >= 0:
            b = qg.tensors[qop.inputs[2]]
            clamped += graph.store_saturated(b, np.round(fg.tensors[fop.inputs[2]].data.astype(np.float64)
                                                                / b.scale))
    return clamped


def quantize_tflite(float_path: Path, out: Path, pixels: np.ndarray, input_contract: dict, opts: QuantOptions,
                    allow_float: bool = False, progress: Progress = no_progress, int16: tuple[str, ...] = ()) -> dict:
    """Write the INT8 .tflite to `out`; returns the report (ranges, bias correction, op inventory). `int16`:
    activation tensors held in int16 (a16w8 ops around them: the accuracy budget's higher precision here)."""
    from edgekit.builder import (
        rounding,  # torch: imported only when a quantize stage actually runs
    )
    from edgekit.builder.litert import simulate

    if opts.method not in METHODS:
        raise QuantizeError(f"calibration method '{opts.method}' is not available for TFLite targets: choose one "
                            f"of {', '.join(METHODS)}")
    float_model = Path(float_path).read_bytes()
    fg = graph.read(float_model)
    qt, cal = _aeq_keys(float_model, pixels, fg, int16)
    input_name = fg.tensors[fg.inputs[0]].name
    q = input_contract["quantization"]
    info = np.iinfo(np.dtype(input_contract["dtype"]))
    pinned = ((info.min - q["zero_point"]) * q["scale"], (info.max - q["zero_point"]) * q["scale"])
    names = [n for n in cal if n != input_name]
    ranges = activation_ranges(float_model, names, pixels, opts,
                               progress(f"quantize: activation ranges ({opts.method})", len(pixels)))
    ranges[input_name] = pinned
    for n, qsv in cal.items():
        lo, hi = ranges[n]
        # int8 grids must hold zero exactly, so every range includes it
        cal[n] = {"min": np.full_like(qsv["min"], min(lo, 0.0)), "max": np.full_like(qsv["max"], max(hi, 0.0))}
    progress(f"quantize: {RECIPE}", None)
    with quiet_native_logs(), contextlib.redirect_stdout(io.StringIO()):
        model = bytearray(qt.quantize(cal).quantized_model)
    qg = graph.read(model)
    inv = graph.inventory(qg)
    if inv["float_ops"] and not allow_float:
        kinds = sorted({f.split("#")[0] for f in inv["float_ops"]})
        raise QuantizeError(f"{len(inv['float_ops'])} op(s) stay float in the INT8 model ({', '.join(kinds)}): the "
                            "integer path cannot handle them; change the model, or pass --allow-float to ship them "
                            "float (the manifest then lists them)")
    report = {"recipe": RECIPE, "calibration_images": int(len(pixels)), "calibrated_tensors": len(cal),
              "activations": "int8 asymmetric per-tensor", "weights": "int8 symmetric per-channel",
              "format": "TFLite fully-integer", "input_grid": {"scale": q["scale"], "zero_point": q["zero_point"]},
              # ARM int8 kernels accumulate products in int32 (weights stay in [-127, 127]): no x86 pair-sum limit
              "int16_safe_weights": False}
    if int16:
        report["int16_tensors"] = list(int16)
        report["a16w8_ops"] = [f"{k} {n}" for k, n in a16w8_ops(fg, int16)]
    if not inv["float_ops"]:
        report["bias_saturated_channels"] = requantize_biases(fg, qg)
        n = min(BIAS_IMAGES, len(pixels))
        reround = opts.weight_rounding != "nearest"
        label = " and ".join(["rounding"] * reround + ["bias correction"] * opts.bias_correction) or "checking"
        try:
            r = simulate.run(fg, qg, pixels[:n], correct_bias=opts.bias_correction, reround=reround,
                               progress=progress(f"quantize: {label}", len(qg.ops), "op"))
        except simulate.UnsupportedOp as e:
            raise QuantizeError(f"{label} cannot evaluate op {e}: the integer path does not support it yet") from None
        if reround:
            report["weight_rounding"] = {"method": "error-compensating (GPTQ update, input covariance)",
                                         "layers": r["rerounded"], "max_fan_in": rounding.MAX_FAN_IN,
                                         "images": n}
        if opts.bias_correction:
            report["bias_correction"] = {"layers": len(r["shifts"]), "images": n,
                                         "mean_abs_shift_removed": round(float(np.mean(r["shifts"])), 6)}
    out.write_bytes(bytes(qg.buf))
    o = qg.tensors[qg.outputs[0]]
    output = {"dtype": o.type.lower(), "quantization": None if o.scale is None else
              {"scale": float(o.scale[0]), "zero_point": int(o.zero_point[0])}}
    return {**report, "integer_only": not inv["float_ops"], "inventory": inv, "output": output}
