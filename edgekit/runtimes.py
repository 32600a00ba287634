"""Device runtimes behind one call shape: `runner(x) -> logits` (device side: no torch, no onnx).

Each runtime is imported only when used, so a board needs just the one its bundle names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]


class RuntimeMissing(RuntimeError):
    pass


def _onnxruntime(path: Path, threads: int | None, fp32_reference: bool) -> Runner:
    try:
        import onnxruntime as ort
    except ImportError:
        raise RuntimeMissing("onnxruntime is not installed: pip install 'edgekit[device-onnx]'") from None
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def _openvino(path: Path, threads: int | None, fp32_reference: bool) -> Runner:
    try:
        import openvino as ov
    except ImportError:
        raise RuntimeMissing("openvino is not installed: pip install 'edgekit[device-openvino]'") from None
    config: dict = {}
    if fp32_reference:
        # OpenVINO runs "FP32" models in bf16 on CPUs with AVX-512 BF16 unless told otherwise.
        config["INFERENCE_PRECISION_HINT"] = "f32"
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})[0].copy()


RUNTIMES: dict[str, Callable[[Path, int | None, bool], Runner]] = {
    "onnxruntime": _onnxruntime,
    "openvino": _openvino,
}


def open_runner(runtime: str, path: Path, threads: int | None = None, fp32_reference: bool = False) -> Runner:
    if runtime not in RUNTIMES:
        raise RuntimeMissing(f"unknown runtime '{runtime}': known are {', '.join(RUNTIMES)}")
    return RUNTIMES[runtime](Path(path), threads, fp32_reference)


def openvino_conv_precisions(path: Path) -> dict[str, int]:
    """How many convolutions OpenVINO's compiled CPU graph runs at each precision (e.g. {'u8': 49})."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU")
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == "Convolution":
            p = info["runtimePrecision"].astype(str)
            counts[p] = counts.get(p, 0) + 1
    return counts
