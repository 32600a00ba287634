"""Stage export: PyTorch -> FP32 ONNX, validated against PyTorch on real images or the build fails.

Exporter: torch.onnx's dynamo exporter at opset 18. Why: it folds BatchNorm and writes TF "SAME" padding straight
into each Conv's `pads` (94 nodes for lite0), where the TorchScript exporter leaves a Pad/Slice/Cast subgraph per
layer (456 nodes) that needs a separate optimizer pass. It cannot emit opset 17; 18 is the lowest it supports and is
read by every onnxruntime and OpenVINO release we target. The one Pad left is the stem's mean-pixel padding of the
pixel-input model (see model.with_pixel_input), by design.
"""
from __future__ import annotations

import collections
import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np

from .preprocess import to_input

OPSET = 18
EXPORTER = "torch.onnx dynamo"
TOLERANCE = 1e-4  # max |logit difference| onnxruntime vs PyTorch, on real images
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"


class ExportError(RuntimeError):
    pass


def export_onnx(model, contract: dict, out: Path) -> None:
    import torch

    shape = contract["shape"]
    dummy = torch.zeros(*shape)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch").setLevel(logging.ERROR)
        program = torch.onnx.export(model, (dummy,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
        program.save(str(out), external_data=False)


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
    worst = 0.0
    top1_same = 0
    for p in pixels:
        x = to_input(p, contract)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = sess.run(None, {INPUT_NAME: x})[0]
        worst = max(worst, float(np.abs(ref - got).max()))
        top1_same += int(ref.argmax() == got.argmax())
    if worst > tolerance:
        raise ExportError(f"ONNX export differs from PyTorch: max |diff| {worst:.2e} > {tolerance:.0e} "
                          f"on {len(pixels)} images")
    return {"images": int(len(pixels)), "max_abs_diff": worst, "tolerance": tolerance,
            "top1_equal": f"{top1_same}/{len(pixels)}"}
