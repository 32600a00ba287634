"""Stage quantize: FP32 ONNX -> INT8 QDQ ONNX with onnxruntime static quantization, then bias correction.

- Activations uint8 (asymmetric: ReLU6 outputs use the whole grid), weights int8 per channel (per-tensor weights wreck
  the depthwise layers once BatchNorm is folded into them).
- Calibration streams: images go through onnxruntime's calibrators a chunk at a time, so histogram methods hold
  histograms, not every intermediate tensor of every image (lite0 with 100 images peaked at 7.6 GB the other way).
- The input tensor is pinned to scale 1, zero point 0: the artifact takes raw pixels, which that grid holds exactly.
- Weights of non-depthwise layers are 7-bit (`reduce_range`). Why: x86 CPUs without VNNI (AVX2, AVX-512F) multiply
  u8 x s8 pairs into saturating int16 (vpmaddubsw); with 8-bit weights real layers overflow (lite0 agreement fell to
  90 % on an AVX2 EPYC). 7-bit weights cannot overflow, on any x86 CPU. Depthwise layers use another kernel.
- Bias correction: rounding weights shifts each output channel's mean by (W_q - W) . E[x]; we measure E[x] on the
  calibration images and subtract the shift from the bias.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from .preprocess import to_input

METHODS = ("minmax", "percentile", "entropy")
DEFAULT_METHOD = "minmax"  # what edgekit build uses unless --method says otherwise
CHUNK = 8  # images per calibration step: bounds memory to this many images' intermediate tensors
BIAS_IMAGES = 64  # input means for bias correction; the findings doc saw 50 images suffice for the same correction


class QuantizeError(RuntimeError):
    pass


@dataclass(frozen=True)
class QuantOptions:
    method: str = DEFAULT_METHOD
    percentile: float = 99.999
    bias_correction: bool = True
    reduce_range_dense: bool = True  # 7-bit weights on non-depthwise layers (see module doc)

    def to_dict(self) -> dict:
        return {"method": self.method, "percentile": self.percentile,
                "bias_correction": self.bias_correction,
                "reduce_range_dense": self.reduce_range_dense, "activations": "uint8 asymmetric",
                "weights": "int8 symmetric per-channel", "format": "QDQ"}


@contextlib.contextmanager
def _quiet():
    """onnxruntime's quantizer prints and logs advice we have already taken; keep progress output readable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


class _Reader:
    """onnxruntime CalibrationDataReader over a block of preprocessed pixels."""

    def __init__(self, input_name: str, px: np.ndarray, contract: dict):
        self.input_name, self.contract = input_name, contract
        self.it = iter(px)

    def get_next(self):
        p = next(self.it, None)
        return None if p is None else {self.input_name: to_input(p, self.contract)}


def _conv_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]


def _is_depthwise(node: onnx.NodeProto, inits: dict) -> bool:
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    return node.op_type == "Conv" and group > 1 and group == inits[node.input[1]].dims[0]


def collect_ranges(fp32: Path, pixels: np.ndarray, contract: dict, opts: QuantOptions, workdir: Path,
                   progress: Callable[[int], None] | None = None):
    """Calibrate activation ranges, streaming `CHUNK` images at a time."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[opts.method]
    extra = {"percentile": opts.percentile, "symmetric": False} if opts.method == "percentile" else {}
    input_name = onnx.load(fp32, load_external_data=False).graph.input[0].name
    with _quiet():
        calibrator = create_calibrator(fp32, None, augmented_model_path=str(workdir / "augmented.onnx"),
                                       calibrate_method=method, extra_options=extra)
        calibrator.execution_providers = ["CPUExecutionProvider"]
        calibrator.create_inference_session()
        for i in range(0, len(pixels), CHUNK):
            calibrator.collect_data(_Reader(input_name, pixels[i:i + CHUNK], contract))
            if progress:
                progress(min(CHUNK, len(pixels) - i))
        return calibrator.compute_data()


def quantize_qdq(fp32: Path, out: Path, pixels: np.ndarray, contract: dict, opts: QuantOptions,
                 progress: Callable[[int], None] | None = None) -> dict:
    """Write the INT8 QDQ model to `out`; returns a report (ranges count, bias-correction effect)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    if opts.method not in METHODS:
        raise QuantizeError(f"unknown calibration method '{opts.method}': choose one of {', '.join(METHODS)}")
    model = onnx.load(fp32)
    inits = {i.name: i for i in model.graph.initializer}
    input_name = model.graph.input[0].name
    overrides: dict = {input_name: [{"scale": np.array(1.0, np.float32), "zero_point": np.array(0, np.uint8)}]}
    if opts.reduce_range_dense:
        for n in _conv_nodes(model):
            if not _is_depthwise(n, inits):
                # one dict per channel keeps the tensor per-channel (a single dict would make it per-tensor)
                overrides[n.input[1]] = [{"reduce_range": True, "axis": 0}] * inits[n.input[1]].dims[0]
    with tempfile.TemporaryDirectory(prefix="edgekit-quant-") as td:
        td = Path(td)
        ranges = collect_ranges(fp32, pixels, contract, opts, td, progress)
        save_tensors_data(ranges, td / "ranges.json")
        method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                  "entropy": CalibrationMethod.Entropy}[opts.method]
        with _quiet():
            quantize_static(str(fp32), str(out), None, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=method, calibration_cache_path=str(td / "ranges.json"),
                            extra_options={"TensorQuantOverrides": overrides})
    report = {"calibration_images": int(len(pixels)), "calibrated_tensors": len(ranges.data)}
    if opts.bias_correction:
        report["bias_correction"] = bias_correct(fp32, out, pixels[:BIAS_IMAGES], contract)
    return report


def _session(model: onnx.ModelProto, outputs: list[str]):
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    for name in outputs:
        if name not in known:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    # Simulated QDQ (no fusion) so every convolution output can be read; with 7-bit dense weights it matches
    # the fused integer kernels.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _input_channel_means(model: onnx.ModelProto, nodes: list[onnx.NodeProto], pixels: np.ndarray,
                         contract: dict) -> dict[str, np.ndarray]:
    """Mean of each conv/gemm input per channel over the calibration images (float model)."""
    names = sorted({n.input[0] for n in nodes})
    sess = _session(model, names)
    input_name = model.graph.input[0].name
    sums: dict[str, np.ndarray] = {}
    for p in pixels:
        for name, o in zip(names, sess.run(names, {input_name: to_input(p, contract)})):
            m = o.reshape(o.shape[0], o.shape[1], -1).mean(axis=(0, 2)) if o.ndim == 4 else o.mean(axis=0)
            sums[name] = sums.get(name, 0) + m.astype(np.float64)
    return {k: v / len(pixels) for k, v in sums.items()}


def _dequantized_weight(qmodel: onnx.ModelProto, node: onnx.NodeProto, inits: dict) -> np.ndarray | None:
    producer = next((n for n in qmodel.graph.node if node.input[1] in n.output), None)
    if producer is None or producer.op_type != "DequantizeLinear":
        return None
    q = numpy_helper.to_array(inits[producer.input[0]]).astype(np.float64)
    scale = numpy_helper.to_array(inits[producer.input[1]]).astype(np.float64)
    zp = numpy_helper.to_array(inits[producer.input[2]]).astype(np.float64)
    shape = (-1,) + (1,) * (q.ndim - 1)
    return (q - zp.reshape(shape)) * scale.reshape(shape)


def _bias_tensor(qmodel: onnx.ModelProto, node: onnx.NodeProto, inits: dict):
    """The bias of a quantized Conv/Gemm: (initializer, scale or None when the bias stayed float)."""
    if len(node.input) < 3:
        return None, None
    name = node.input[2]
    if name in inits:
        return inits[name], None
    producer = next((n for n in qmodel.graph.node if name in n.output), None)
    if producer is not None and producer.op_type == "DequantizeLinear" and producer.input[0] in inits:
        return inits[producer.input[0]], numpy_helper.to_array(inits[producer.input[1]])
    return None, None


def bias_correct(fp32: Path, qdq: Path, pixels: np.ndarray, contract: dict) -> dict:
    """Remove the mean output shift that weight rounding adds: bias -= (W_q - W) . E[x] (in place on `qdq`).

    E[x] is each input channel's mean on the calibration images (inputs after ReLU6 are far from zero-mean, so
    rounded weights shift every output channel by a fixed amount). Analytic, so corrections do not compound.
    """
    fmodel, qmodel = onnx.load(fp32), onnx.load(qdq)
    fnodes = {n.name: n for n in _conv_nodes(fmodel)}
    finits = {i.name: i for i in fmodel.graph.initializer}
    qinits = {i.name: i for i in qmodel.graph.initializer}
    qnodes = [n for n in _conv_nodes(qmodel) if n.name in fnodes]
    means = _input_channel_means(fmodel, [fnodes[n.name] for n in qnodes], pixels, contract)
    corrected, shifts = 0, []
    for node in qnodes:
        fnode = fnodes[node.name]
        wq = _dequantized_weight(qmodel, node, qinits)
        init, scale = _bias_tensor(qmodel, node, qinits)
        if wq is None or init is None or fnode.input[1] not in finits:
            continue
        w = numpy_helper.to_array(finits[fnode.input[1]]).astype(np.float64)
        dw = wq - w
        mean_x = means[fnode.input[0]]
        if node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            shift = (dw if trans_b else dw.T) @ mean_x
        elif _is_depthwise(fnode, finits):
            shift = dw.reshape(dw.shape[0], -1).sum(axis=1) * mean_x
        else:
            shift = dw.reshape(dw.shape[0], dw.shape[1], -1).sum(axis=2) @ mean_x
        b = numpy_helper.to_array(init)
        if scale is None:
            new = (b - shift).astype(b.dtype)
        else:
            new = np.clip(np.round(b - shift / scale), -2**31, 2**31 - 1).astype(b.dtype)
        init.CopyFrom(numpy_helper.from_array(new, init.name))
        corrected += 1
        shifts.append(float(np.abs(shift).mean()))
    onnx.save(qmodel, qdq)
    return {"layers": corrected, "mean_abs_shift_removed": round(float(np.mean(shifts)) if shifts else 0.0, 6)}
