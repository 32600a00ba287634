"""Target backends: turn the pipeline's FP32 ONNX and INT8 QDQ ONNX into a target's artifact pair.

A backend writes `model.int8.<ext>` and `model.fp32.<ext>` (same format) into a directory and returns what it
checked. A target file in `targets/` names its backend here; a new format means one new function.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from .runtimes import openvino_conv_precisions


class BackendError(RuntimeError):
    pass


def onnx_qdq(fp32: Path, int8: Path, out: Path) -> dict:
    shutil.copyfile(fp32, out / "model.fp32.onnx")
    shutil.copyfile(int8, out / "model.int8.onnx")
    return {"int8": "model.int8.onnx", "fp32": "model.fp32.onnx", "checks": {}}


def openvino_ir(fp32: Path, int8: Path, out: Path) -> dict:
    import openvino as ov

    for src, stem in ((fp32, "model.fp32"), (int8, "model.int8")):
        # compress_to_fp16=False: the FP32 reference must really hold FP32 weights.
        ov.save_model(ov.convert_model(str(src)), str(out / f"{stem}.xml"), compress_to_fp16=False)
    precisions = openvino_conv_precisions(out / "model.int8.xml")
    integer = sum(n for p, n in precisions.items() if p in ("u8", "i8"))
    total = sum(precisions.values())
    if total == 0 or integer != total:
        raise BackendError(f"OpenVINO runs only {integer} of {total} convolutions in int8 ({precisions}); "
                           "the IR is not a real INT8 model")
    return {"int8": "model.int8.xml", "fp32": "model.fp32.xml",
            "checks": {"openvino_conv_precisions": precisions}}


BACKENDS: dict[str, Callable[[Path, Path, Path], dict]] = {"onnx_qdq": onnx_qdq, "openvino_ir": openvino_ir}
