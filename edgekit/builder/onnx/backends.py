"""Target backends: turn the pipeline's FP32 ONNX and INT8 QDQ ONNX into a target's artifact pair.

A backend writes `model.int8.<ext>` and `model.fp32.<ext>` (same format) into a directory and returns what it
checked. A target file in `targets/` names its backend here; a new format means one new function.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable

from edgekit.device.runtimes import openvino_conv_precisions
from edgekit.errors import BackendError


def onnx_qdq(fp32: Path, int8: Path, out: Path) -> dict:
    shutil.copyfile(fp32, out / "model.fp32.onnx")
    shutil.copyfile(int8, out / "model.int8.onnx")
    return {"int8": "model.int8.onnx", "fp32": "model.fp32.onnx", "checks": {}}


def openvino_ir(fp32: Path, int8: Path, out: Path) -> dict:
    import openvino as ov

    for src, stem in ((fp32, "model.fp32"), (int8, "model.int8")):
        # compress_to_fp16=False: the FP32 reference must really hold FP32 weights.
        ov.save_model(_stable_names(ov.convert_model(str(src))), str(out / f"{stem}.xml"), compress_to_fp16=False)
    precisions = openvino_conv_precisions(out / "model.int8.xml")
    integer = sum(n for p, n in precisions.items() if p in ("u8", "i8"))
    total = sum(precisions.values())
    left_float = _float_convs(int8)  # layers an accuracy budget put in float (mixed_precision.py), on purpose
    if total == 0 or integer != total - left_float:
        raise BackendError(f"OpenVINO runs only {integer} of {total} convolutions in int8 ({precisions}; "
                           f"{left_float} left in float on purpose); the IR is not the INT8 model it should be")
    return {"int8": "model.int8.xml", "fp32": "model.fp32.xml",
            "checks": {"openvino_conv_precisions": precisions}}


def _stable_names(model):
    """Nodes the converter adds are named from a counter global to the process (Constant_116570), so the same model
    converted after others (a matrix build, a reused Ray worker) would serialise differently; number them per model
    instead, in graph order, and the IR's bytes depend on the model alone."""
    counts: dict[str, int] = {}
    for op in model.get_ordered_ops():
        auto = re.fullmatch(r"([A-Za-z]+)_\d+", op.get_friendly_name())  # Constant_116570, or Reshape_94065 folded
        if auto:
            kind = auto.group(1)
            counts[kind] = counts.get(kind, 0) + 1
            op.set_friendly_name(f"{kind}_{counts[kind]}")
    return model


def _float_convs(qdq: Path) -> int:
    import onnx

    from edgekit.builder.onnx.mixed_precision import quantized_layers

    m = onnx.load(qdq, load_external_data=False)
    quantized = set(quantized_layers(m))
    return sum(1 for n in m.graph.node if n.op_type == "Conv" and n.name not in quantized)


BACKENDS: dict[str, Callable[[Path, Path, Path], dict]] = {"onnx_qdq": onnx_qdq, "openvino_ir": openvino_ir}
