"""Batched evaluation of our ONNX graphs (FP32 and QDQ) in torch, one node at a time.

Why not onnxruntime: sequential bias correction needs every convolution's output for a whole batch of images, layer by
layer, with the corrections of earlier layers already applied. onnxruntime would need one session and one pass over
the images per layer; here one pass does all layers. QuantizeLinear/DequantizeLinear follow the ONNX definitions
(round half to even, saturate), so this is the same simulated-QDQ arithmetic onnxruntime runs without fusion.
Build side only (torch).
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from edgekit.builder.fakequant import ste_round
from edgekit.errors import UnsupportedOp

_QRANGE = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127), np.dtype(np.int32): (-2**31, 2**31 - 1)}



def attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _bcast(t: torch.Tensor, axis: int, ndim: int) -> torch.Tensor:
    """Per-axis parameter of shape (C,) reshaped to broadcast along `axis` of an `ndim` tensor."""
    if t.ndim == 0:
        return t
    shape = [1] * ndim
    shape[axis] = -1
    return t.reshape(shape)


def _quantize(x, scale, zp, axis, dtype, ste: bool = False):
    """Integer values, kept in float for speed. ste: rounding passes gradients straight through, no in-place steps
    (INT8-aware fine-tuning's autograd)."""
    lo, hi = _QRANGE[dtype]
    s, z = _bcast(scale, axis, x.ndim), _bcast(zp, axis, x.ndim)
    if ste:
        return (ste_round(x / s) + z).clamp(lo, hi)
    return torch.round(x / s).add_(z).clamp_(lo, hi)


def _dequantize(q, scale, zp, axis):
    d = q - _bcast(zp, axis, q.ndim)
    s = _bcast(scale, axis, q.ndim)
    return d * s if d.requires_grad else d.mul_(s)


def conv_padded(x, a: dict):
    """The Conv's input with its explicit pads applied (what its kernel windows slide over)."""
    pads = a.get("pads", [0, 0, 0, 0])
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedOp("Conv with auto_pad")
    return F.pad(x, (pads[1], pads[3], pads[0], pads[2])) if any(pads) else x


def _conv(x, w, b, a):
    pads = a.get("pads", [0, 0, 0, 0])
    if pads[0] == pads[2] and pads[1] == pads[3] and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"):
        padding: tuple | int = (pads[0], pads[1])  # symmetric: the convolution pads, no copy
    else:
        x, padding = conv_padded(x, a), 0
    return F.conv2d(x, w, b, stride=a.get("strides", [1, 1]), padding=padding, dilation=a.get("dilations", [1, 1]),
                    groups=a.get("group", 1))


def _pad(x, pads, value):
    n = x.ndim
    pads = [int(p) for p in pads]
    torch_pads: list[int] = []
    for d in reversed(range(n)):
        torch_pads += [pads[d], pads[d + n]]
    return F.pad(x, torch_pads, value=float(value))


class Graph:
    """A topologically sorted ONNX graph with its initializers as float tensors (and their integer dtypes)."""

    def __init__(self, model: onnx.ModelProto, ste: bool = False):
        self.model = model
        self.ste = ste  # rounding passes gradients (INT8-aware fine-tuning)
        self.nodes = list(model.graph.node)
        self.consts: dict[str, torch.Tensor] = {}
        self.dtypes: dict[str, np.dtype] = {}
        for init in model.graph.initializer:
            self.set_const(init.name, numpy_helper.to_array(init))
        self.input = model.graph.input[0].name
        # how many nodes read each name: intermediates are freed once their last reader ran
        self.readers: dict[str, int] = {}
        for n in self.nodes:
            for i in n.input:
                if i:
                    self.readers[i] = self.readers.get(i, 0) + 1
        for o in model.graph.output:
            self.readers[o.name] = self.readers.get(o.name, 0) + 1

    def set_const(self, name: str, arr: np.ndarray) -> None:
        self.dtypes[name] = arr.dtype
        self.consts[name] = torch.from_numpy(np.asarray(arr, dtype=np.float64 if arr.dtype == np.int32
                                                        else np.float32).copy())

    def run(self, x: torch.Tensor, before: Callable[[onnx.NodeProto, dict], None] | None = None
            ) -> Iterator[tuple[onnx.NodeProto, dict]]:
        """Evaluate node by node; yields (node, env) after each node so a caller can read or replace its output.
        `before(node, env)` runs ahead of each node, so a caller can change the node's inputs (re-rounded weights)."""
        if x.ndim == 4:  # channels-last: torch's CPU convolutions (depthwise especially) run faster on it
            x = x.contiguous(memory_format=torch.channels_last)
        env: dict[str, torch.Tensor] = {self.input: x}
        left = dict(self.readers)

        def get(name):
            return env[name] if name in env else self.consts[name]

        for node in self.nodes:
            if before is not None:
                before(node, env)
            ins = [get(i) if i else None for i in node.input]
            a = attrs(node)
            op = node.op_type
            if op == "QuantizeLinear":
                dtype = self.dtypes.get(node.input[2], np.dtype(np.uint8)) if len(node.input) > 2 else np.dtype(np.uint8)
                zp = ins[2] if len(ins) > 2 else torch.zeros(())
                out = _quantize(ins[0], ins[1], zp, a.get("axis", 1), dtype, self.ste)
            elif op == "DequantizeLinear":
                zp = ins[2] if len(ins) > 2 else torch.zeros(())
                out = _dequantize(ins[0], ins[1], zp, a.get("axis", 1)).float()
            elif op == "Conv":
                out = _conv(ins[0], ins[1].float(), None if len(ins) < 3 else ins[2].float(), a)
            elif op == "Clip":
                lo = ins[1] if len(ins) > 1 and ins[1] is not None else None
                hi = ins[2] if len(ins) > 2 and ins[2] is not None else None
                out = torch.clamp(ins[0], None if lo is None else float(lo), None if hi is None else float(hi))
            elif op == "Relu":
                out = torch.relu(ins[0])
            elif op == "Add":
                out = ins[0] + ins[1]
            elif op == "Pad":
                if a.get("mode", b"constant") not in (b"constant", "constant"):
                    raise UnsupportedOp(f"Pad mode {a['mode']!r}")
                value = ins[2] if len(ins) > 2 and ins[2] is not None else 0.0
                out = _pad(ins[0], ins[1].long().tolist(), value)
            elif op == "ReduceMean":
                axes = ins[1].long().tolist() if len(ins) > 1 and ins[1] is not None else a.get("axes")
                out = ins[0].mean(dim=tuple(int(v) for v in axes), keepdim=bool(a.get("keepdims", 1)))
            elif op == "GlobalAveragePool":
                out = ins[0].mean(dim=(2, 3), keepdim=True)
            elif op in ("Flatten", "Reshape"):
                out = ins[0].reshape(ins[0].shape[0], -1)
            elif op == "Gemm":
                A = ins[0].t() if a.get("transA", 0) else ins[0]
                B = ins[1].float().t() if a.get("transB", 0) else ins[1].float()
                out = a.get("alpha", 1.0) * (A @ B)
                if len(ins) > 2 and ins[2] is not None:
                    out = out + a.get("beta", 1.0) * ins[2].float()
            elif op == "Identity":
                out = ins[0]
            else:
                raise UnsupportedOp(op)
            env[node.output[0]] = out
            yield node, env
            self._release(node, env, left)

    def _release(self, node: onnx.NodeProto, env: dict, left: dict) -> None:
        for i in node.input:
            if i in env and i != self.input:
                left[i] -= 1
                if left[i] == 0:
                    del env[i]
