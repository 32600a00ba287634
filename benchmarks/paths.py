"""The artifact paths the suite compares: one table that drives both the speed and the fidelity runs.

Each path is a way a user could run the classifier: our three bundles' artifacts (x86 OpenVINO IR, onnx QDQ,
arm64 .tflite, INT8 and their FP32 twins), PyTorch eager, and the same FP32 model quantized by NNCF's own
`nncf.quantize` with its defaults (the tool an OpenVINO user would reach for instead of edgekit).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgekit.core import contract
from edgekit.device import preprocess, runtimes


@dataclass(frozen=True)
class ArtifactPath:
    name: str
    precision: str  # fp32 | int8
    runtime: str  # pytorch | onnxruntime | openvino | litert
    bundle: str | None  # which bundle's artifact (target name); None: made here (PyTorch eager, NNCF)
    artifact: str | None = None  # "int8" | "fp32" key of the bundle's manifest


PATHS = (
    ArtifactPath("PyTorch eager FP32", "fp32", "pytorch", None),
    ArtifactPath("onnxruntime FP32", "fp32", "onnxruntime", "onnx", "fp32"),
    ArtifactPath("onnxruntime INT8 (edgekit QDQ)", "int8", "onnxruntime", "onnx", "int8"),
    ArtifactPath("OpenVINO FP32 (f32)", "fp32", "openvino", "x86", "fp32"),
    ArtifactPath("OpenVINO INT8 (edgekit)", "int8", "openvino", "x86", "int8"),
    ArtifactPath("OpenVINO INT8 (NNCF defaults)", "int8", "openvino", None),
    ArtifactPath("TFLite FP32 (LiteRT)", "fp32", "litert", "arm64", "fp32"),
    ArtifactPath("TFLite INT8 (edgekit)", "int8", "litert", "arm64", "int8"),
)
NNCF = PATHS[5].name
EAGER = PATHS[0].name


@dataclass
class Opened:
    run: Callable[[np.ndarray], np.ndarray]
    to_input: Callable[[np.ndarray], np.ndarray]  # HWC uint8 pixels -> this artifact's input


def _pytorch(variant, weights, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    from edgekit.models import network as model_mod
    from edgekit.models import weights as weights_mod

    torch.set_num_threads(threads)
    net = model_mod.with_pixel_input(weights_mod.build_model(variant, weights)).eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    return run


def nncf_quantize(fp32_onnx: Path, calib_x: np.ndarray, out: Path) -> Path:
    """nncf.quantize with its defaults (preset, subset size, fast bias correction, overflow fix) on the FP32 model
    our bundles start from, calibrated on the same images as ours; saved as OpenVINO IR."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32_onnx))
    q = nncf.quantize(model, nncf.Dataset([calib_x[i:i + 1] for i in range(len(calib_x))]))
    ov.save_model(q, str(out))
    return out


def open_path(p: ArtifactPath, bundles: dict[str, tuple[Path, dict]], variant, weights, nncf_ir: Path,
              threads: int) -> Opened:
    if p.runtime == "pytorch":
        c = contract.pixels_nchw(variant)
        return Opened(_pytorch(variant, weights, threads), lambda px: preprocess.to_input(px, c))
    if p.bundle is None:  # NNCF: takes what the FP32 ONNX takes
        root, m = bundles["onnx"]
        c = contract.from_manifest(m, "fp32")
        return Opened(runtimes.open_runner("openvino", nncf_ir, threads=threads),
                      lambda px: preprocess.to_input(px, c))
    root, m = bundles[p.bundle]
    c = contract.from_manifest(m, p.artifact)
    run = runtimes.open_runner(p.runtime, root / m["artifacts"][p.artifact], threads=threads,
                               fp32_reference=p.artifact == "fp32")
    return Opened(run, lambda px: preprocess.to_input(px, c))
