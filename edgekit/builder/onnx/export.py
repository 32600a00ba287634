"""Export (onnx route): PyTorch -> FP32 ONNX, validated against PyTorch on real images or the build fails.

Exporter: torch.onnx's TorchScript exporter at opset 18, then onnxruntime's basic graph optimizer (constant folding,
standard ONNX ops only) written back as the model. Why: the TorchScript exporter writes TF "SAME" padding as a
Pad/Slice/Cast subgraph per layer (456 nodes for lite0), which the optimizer folds into each Conv's `pads`: 95 nodes,
BatchNorm folded, the same graph the dynamo exporter gives directly. But the dynamo route took 11.3 s for lite0 here
against 2.0 s, a sixth of the cold-build budget. Opset 18 because the dynamo exporter (the way forward when a future
torch drops TorchScript export) cannot emit 17, and every onnxruntime and OpenVINO release we target reads 18. The
one Pad left is the stem's mean-pixel padding of the pixel-input model (see model.with_pixel_input), by design.
"""
from __future__ import annotations

import collections
import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np

from edgekit.builder.parity import parity
from edgekit.core.contract import INPUT_NAME, OUTPUT_NAME
from edgekit.errors import ExportError

OPSET = 18
EXPORTER = "torchscript+ort-basic"
TOLERANCE = 1e-4  # max |logit difference| onnxruntime vs PyTorch, on real images



def export_onnx(model, contract: dict, out: Path) -> None:
    import torch

    shape = contract["shape"]
    dummy = torch.zeros(*shape)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch").setLevel(logging.ERROR)
        raw = out.with_name(out.stem + ".raw.onnx")
        try:
            torch.onnx.export(model, (dummy,), str(raw), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
            _fold(raw, out)
        finally:
            raw.unlink(missing_ok=True)


def _fold(raw: Path, out: Path) -> None:
    """onnxruntime's basic level: constant folding and redundant-node removal, all in standard ONNX ops."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(out)
    ort.InferenceSession(str(raw), so, providers=["CPUExecutionProvider"])


def graph_report(path: Path) -> dict:
    import onnx

    m = onnx.load(str(path))
    ops = collections.Counter(n.op_type for n in m.graph.node)
    return {"nodes": len(m.graph.node), "op_counts": dict(sorted(ops.items())),
            "opset": next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))}


def validate_export(model, path: Path, pixels: np.ndarray, contract: dict, tolerance: float = TOLERANCE) -> dict:
    """onnx checker + onnxruntime vs PyTorch logits on real images; raises ExportError beyond tolerance."""
    import onnx
    import onnxruntime as ort
    import torch

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise ExportError(f"exported ONNX fails the onnx checker: {str(e).splitlines()[0]}") from None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def reference(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return parity(reference, lambda x: sess.run(None, {INPUT_NAME: x})[0], pixels, contract, tolerance,
                  lambda msg: ExportError(f"ONNX export differs from PyTorch: {msg}"))
