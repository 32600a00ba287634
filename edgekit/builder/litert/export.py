"""Convert (litert route): PyTorch -> float .tflite with litert-torch, validated against PyTorch.

No TensorFlow: litert-torch lowers the pixel-input model (normalisation folded into the stem) to TFLite ops with NHWC
input, folds padding into the convolutions and fuses ReLU6. The float model is the FP32 reference of the bundle and
the input of the quantizer.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from edgekit.builder.parity import parity
from edgekit.errors import ExportError

CONVERTER = "litert-torch"
TOLERANCE = 1e-4  # max |logit difference| TFLite vs PyTorch, on real images



@contextlib.contextmanager
def quiet_native_logs():
    """litert's C++ layers log straight to file descriptors 1 and 2 (progress lines, INFO logs); stdout must stay
    clean for `--json` and the progress display readable. Errors still surface as exceptions."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
    finally:
        sys.stdout.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def convert(model, contract: dict, out: Path) -> None:
    """Write the float .tflite taking `contract` (NHWC float pixels)."""
    import torch

    with quiet_native_logs():
        logging.getLogger("absl").setLevel(logging.ERROR)
        import litert_torch

        nhwc = litert_torch.to_channel_last_io(model.eval(), args=[0])
        try:
            edge = litert_torch.convert(nhwc, (torch.zeros(*contract["shape"]),))
        except Exception as e:
            raise ExportError(f"litert-torch cannot convert the model: {str(e).splitlines()[0]}") from None
        edge.export(str(out))


def interpreter(path: Path | bytes, threads: int = 2, preserve: bool = False):
    from ai_edge_litert.interpreter import Interpreter

    with quiet_native_logs():
        kw = {"model_content": bytes(path)} if isinstance(path, (bytes, bytearray)) else {"model_path": str(path)}
        it = Interpreter(**kw, num_threads=threads, experimental_preserve_all_tensors=preserve)
        it.allocate_tensors()
    return it


def validate(model, path: Path, pixels: np.ndarray, contract: dict, tolerance: float = TOLERANCE) -> dict:
    """ai-edge-litert vs PyTorch logits on real images; raises ExportError beyond tolerance."""
    import torch

    it = interpreter(path)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]

    def reference(x):  # PyTorch takes NCHW
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()

    def candidate(x):
        it.set_tensor(inp["index"], x)
        it.invoke()
        return it.get_tensor(out["index"])

    return parity(reference, candidate, pixels, contract, tolerance,
                  lambda msg: ExportError(f"float .tflite differs from PyTorch: {msg}"))
