"""Batched evaluation of a float .tflite and its int8 twin in torch, op by op in lockstep; sequential bias correction.

Why not the TFLite interpreter: bias correction must see each layer's int8 output for a batch of images with every
earlier layer already corrected. The interpreter can only rerun the whole model (once per layer, per image); measured
on lite0, correcting all layers in one interpreter pass instead (each layer against its full upstream error) diverged
to 1 % agreement, because every layer also cancelled what the layers before it were cancelling. Here the int8 graph is
evaluated as simulated integer arithmetic (dequantized weights and biases, every activation rounded and clamped to its
int8 grid), which is what the kernels compute up to fixed-point rounding of the requantization.

int16 tensors (a16w8 layers) and the QUANTIZE ops between them and int8 ones are evaluated the same way.
Tensors live as torch NCHW; TFLite's NHWC axes are mapped where an op names axes. Build side only (torch).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from edgekit.builder import rounding
from edgekit.builder.fakequant import mean_shift, ste_round
from edgekit.builder.litert.graph import LAYERS, Graph, Op, Tensor, store_saturated
from edgekit.core import arch
from edgekit.errors import UnsupportedOp

SUPPORTED = LAYERS + ("ADD", "MEAN", "PADV2", "PAD", "QUANTIZE")
_NHWC_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}
_INT = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767)}
_ACT = {None: (-np.inf, np.inf), "RELU": (0.0, np.inf), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}



def _param(t: Tensor, values: np.ndarray, ndim: int) -> torch.Tensor:
    """Per-channel (or per-tensor) parameter shaped to broadcast on axis 1 (channels, NCHW) of an ndim tensor."""
    v = torch.as_tensor(np.asarray(values, np.float64), dtype=torch.float32)
    return v.reshape([1, -1] + [1] * (ndim - 2)) if v.numel() > 1 else v.reshape(())


def fake_quant(x: torch.Tensor, t: Tensor, ste: bool = False) -> torch.Tensor:
    """Round and clamp onto t's integer grid, back to float: what an int8 tensor can hold. ste: rounding passes
    gradients straight through, no in-place steps (INT8-aware fine-tuning's autograd)."""
    if t.scale is None or t.type not in _INT:
        return x
    lo, hi = _INT[t.type]
    s, z = _param(t, t.scale, x.ndim), _param(t, t.zero_point, x.ndim)
    if ste:
        return ((ste_round(x / s) + z).clamp(lo, hi) - z) * s
    return (torch.round(x / s) + z).clamp_(lo, hi).sub_(z).mul_(s)


def dequant_const(t: Tensor) -> torch.Tensor:
    """A constant as float: integer data times its scale along the quantized axis."""
    a = np.asarray(t.data)
    if t.scale is None or a.dtype.kind == "f":
        return torch.from_numpy(np.asarray(a, np.float32))
    shape = [1] * a.ndim
    if t.scale.size > 1:
        shape[t.axis] = -1
    return torch.from_numpy(np.asarray((a.astype(np.float64) - t.zero_point.reshape(shape)) * t.scale.reshape(shape),
                                       np.float32))


def _torch_weight(op: Op, w: torch.Tensor) -> torch.Tensor:
    if op.kind == "CONV_2D":
        return w.permute(0, 3, 1, 2).contiguous()  # OHWI -> OIHW
    if op.kind == "DEPTHWISE_CONV_2D":
        return w.permute(3, 0, 1, 2).contiguous()  # 1HWC -> C1HW
    return w  # FULLY_CONNECTED: (out, in)


def _padded(op: Op, x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    o = op.options
    if o["padding"] == "SAME":
        ph = arch.same_pads(x.shape[2], kh, o["stride"][0])
        pw = arch.same_pads(x.shape[3], kw, o["stride"][1])
        if any(ph + pw):
            x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
    return x


def _layer(op: Op, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """The op's accumulator (before its fused activation)."""
    if op.kind == "FULLY_CONNECTED":
        return F.linear(x.reshape(x.shape[0], -1), w, b)
    kh, kw = w.shape[-2:]
    x = _padded(op, x, kh, kw)
    groups = x.shape[1] if op.kind == "DEPTHWISE_CONV_2D" else 1
    return F.conv2d(x, w, b, stride=op.options["stride"], dilation=op.options["dilation"], groups=groups)


def _reround(op: Op, x: torch.Tensor, fw: torch.Tensor, wt: Tensor) -> None:
    """Re-round the int8 weights of one layer in place (builder/rounding.py), for the inputs x it actually sees."""
    w = np.asarray(fw.numpy(), np.float64)
    if op.kind == "FULLY_CONNECTED":
        h = rounding.patch_covariance(x.reshape(x.shape[0], -1), (1, 1), (1, 1), (1, 1), False)
        wt.data[...] = rounding.round_weights(w, wt.scale, h).reshape(wt.data.shape)
        return
    depthwise = op.kind == "DEPTHWISE_CONV_2D"
    kh, kw = w.shape[1:3]  # OHWI, or 1HWC for depthwise
    h = rounding.patch_covariance(_padded(op, x, kh, kw), (kh, kw), tuple(op.options["stride"]),
                                         tuple(op.options["dilation"]), depthwise)
    if depthwise:  # one row of kh*kw taps per channel
        c = w.shape[3]
        q = rounding.round_weights(w.reshape(kh * kw, c).T, wt.scale, h)
        wt.data[...] = q.T.reshape(1, kh, kw, c)
    else:  # one row of (in, kh, kw) per output channel, the order of the patch covariance
        out_c, in_c = w.shape[0], w.shape[3]
        q = rounding.round_weights(w.transpose(0, 3, 1, 2).reshape(out_c, -1), wt.scale, h)
        wt.data[...] = q.reshape(out_c, in_c, kh, kw).transpose(0, 2, 3, 1)


def _activation(op: Op, y: torch.Tensor) -> torch.Tensor:
    lo, hi = _ACT.get(op.options.get("activation"), (None, None))
    if lo is None:
        raise UnsupportedOp(f"{op.kind} with fused activation {op.options.get('activation')}")
    if lo == -np.inf and hi == np.inf:
        return y
    return y.clamp(min=None if lo == -np.inf else lo, max=None if hi == np.inf else hi)


def _other(op: Op, g: Graph, env: dict[int, torch.Tensor]) -> torch.Tensor:
    x = env[op.inputs[0]]
    if op.kind == "ADD":
        return _activation(op, x + env[op.inputs[1]])
    if op.kind == "MEAN":
        axes = [_NHWC_TO_NCHW[int(a) % 4] for a in np.atleast_1d(g.tensors[op.inputs[1]].data)]
        return x.mean(dim=axes, keepdim=op.options.get("keep_dims", False))
    if op.kind in ("PADV2", "PAD"):
        p = np.asarray(g.tensors[op.inputs[1]].data).reshape(4, 2)  # NHWC (before, after)
        value = float(dequant_const(g.tensors[op.inputs[2]]).reshape(())) if op.kind == "PADV2" else 0.0
        if p[0].any() or p[3].any():
            raise UnsupportedOp(f"{op.kind} over batch or channels")
        return F.pad(x, (int(p[2, 0]), int(p[2, 1]), int(p[1, 0]), int(p[1, 1])), value=value)
    raise UnsupportedOp(op.kind)


def float_op(op: Op, g: Graph, env: dict[int, torch.Tensor]) -> torch.Tensor:
    """One op of the float graph (weights and biases dequantized if stored so)."""
    if op.kind in LAYERS:
        fw, fb = (dequant_const(g.tensors[j]) for j in op.inputs[1:3])
        return _activation(op, _layer(op, env[op.inputs[0]], _torch_weight(op, fw), fb))
    return _other(op, g, env)


def _passband(op: Op, out_t: Tensor) -> tuple[float, float]:
    """Where the output follows its accumulator: inside the fused activation and the int8 grid (a range narrower
    than the data, e.g. percentile, clips too; those positions say nothing about the bias)."""
    lo, hi = _ACT[op.options.get("activation")]
    qlo, qhi = _INT[out_t.type]
    s, z = float(out_t.scale[0]), float(out_t.zero_point[0])
    return max(lo, (qlo - z) * s), min(hi, (qhi - z) * s)


def _last_use(g: Graph) -> dict[int, int]:
    last = {}
    for op in g.ops:
        for j in op.inputs:
            last[j] = op.index
    for j in g.outputs:
        last[j] = len(g.ops)
    return last


def pairs(fg: Graph, qg: Graph):
    """(float op, int8 op) in execution order; a QUANTIZE op the quantizer put between int8 and int16 layers
    (a16w8 layers, mixed precision) has no float twin: (None, op)."""
    f = iter(fg.ops)
    for qop in qg.ops:
        yield (None if qop.kind == "QUANTIZE" else next(f)), qop


def check_pair(fg: Graph, qg: Graph) -> None:
    if [o.kind for o in fg.ops] != [o.kind for o in qg.ops if o.kind != "QUANTIZE"]:
        raise UnsupportedOp("the quantized model's ops differ from the float model's; cannot pair them")
    for op in qg.ops:
        if op.kind not in SUPPORTED:
            raise UnsupportedOp(op.kind)


def run(fg: Graph, qg: Graph, pixels: np.ndarray, correct_bias: bool = False, reround: bool = False,
        progress: Callable[[int], None] | None = None) -> dict:
    """Evaluate both graphs on NHWC pixels; with correct_bias, fix each int8 layer's bias in place (in qg's bytes)
    in execution order; with reround, first re-round the small fan-in layers' int8 weights for the inputs they see
    (rounding.py). Returns the float and int8 logits, per-layer shifts (in output units) before correction and
    how many layers were re-rounded."""
    check_pair(fg, qg)
    x = _nchw(pixels)
    fenv = {fg.inputs[0]: x}
    qenv = {qg.inputs[0]: fake_quant(x, qg.tensors[qg.inputs[0]])}
    flast, qlast = _last_use(fg), _last_use(qg)
    shifts = []
    rerounded = 0
    with torch.inference_mode():
        for fop, qop in pairs(fg, qg):
            out_t = qg.tensors[qop.outputs[0]]
            if fop is not None and qop.kind in LAYERS:
                fenv[fop.outputs[0]] = yf = float_op(fop, fg, fenv)
                fwt = fg.tensors[fop.inputs[1]]
                if reround and rounding.worth_it(qop.kind, tuple(fwt.data.shape)):
                    _reround(qop, qenv[qop.inputs[0]], dequant_const(fwt), qg.tensors[qop.inputs[1]])
                    rerounded += 1
                acc = _accumulator(qop, qg, qenv)
                bias_t = qg.tensors[qop.inputs[2]]
                yq = _requantize(qop, acc, bias_t, out_t)
                if correct_bias:
                    shift = mean_shift(yq, yf, _passband(qop, out_t))
                    shifts.append(float(np.abs(shift).mean()))
                    steps = np.round(shift / bias_t.scale)
                    store_saturated(bias_t, bias_t.data.astype(np.int64) - steps.astype(np.int64))
                    yq = _requantize(qop, acc, bias_t, out_t)
                qenv[qop.outputs[0]] = yq
            else:
                if fop is not None:
                    fenv[fop.outputs[0]] = float_op(fop, fg, fenv)
                qenv[qop.outputs[0]] = _int8_op(qop, qg, qenv)
            _release(fop, fenv, flast)
            _release(qop, qenv, qlast)
            if progress:
                progress(1)
    out = qg.outputs[0]
    return {"float": fenv[fg.outputs[0]].numpy(), "int8": qenv[out].numpy(), "shifts": shifts,
            "rerounded": rerounded}


def _nchw(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels, np.float32)).permute(0, 3, 1, 2).contiguous()


def _release(op: Op | None, env: dict, last: dict[int, int]) -> None:
    """Drop the tensors no later op reads (a batch of early activations is hundreds of MB)."""
    if op is not None:
        for j in op.inputs:
            if last.get(j) == op.index:
                env.pop(j, None)


def _accumulator(op: Op, g: Graph, env: dict[int, torch.Tensor]) -> torch.Tensor:
    return _layer(op, env[op.inputs[0]], _torch_weight(op, dequant_const(g.tensors[op.inputs[1]])), None)


def _requantize(op: Op, acc: torch.Tensor, bias_t: Tensor, out_t: Tensor) -> torch.Tensor:
    return fake_quant(_activation(op, acc + _param(bias_t, _bias(bias_t), acc.ndim)), out_t)


def _int8_op(op: Op, g: Graph, env: dict[int, torch.Tensor], out_t: Tensor | None = None) -> torch.Tensor:
    """One op of the integer graph, its output on out_t's grid (default: the op's own output tensor)."""
    out_t = out_t or g.tensors[op.outputs[0]]
    if op.kind in LAYERS:
        return _requantize(op, _accumulator(op, g, env), g.tensors[op.inputs[2]], out_t)
    if op.kind == "QUANTIZE":  # int8 <-> int16 between a16w8 and int8 layers
        return fake_quant(env[op.inputs[0]], out_t)
    return fake_quant(_other(op, g, env), out_t)


def int16_grid(t: Tensor) -> Tensor:
    """The grid an a16w8 layer gives tensor t: symmetric int16 over the range of its int8 grid (what
    ai-edge-quantizer derives from the same calibration range)."""
    lo, hi = _INT[t.type]
    s, z = float(t.scale[0]), float(t.zero_point[0])
    amax = max(abs((lo - z) * s), abs((hi - z) * s))
    return dataclasses.replace(t, type="INT16", scale=np.array([amax / 32767]), zero_point=np.zeros(1, np.int64))


def int16_sensitivity(qg: Graph, pixels: np.ndarray, candidates: list[int],
                      progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Logits of the integer graph as it is, and with each candidate activation tensor on its int16 grid alone
    (what running its producer and consumers as a16w8 gives it). Each rerun starts at the tensor's producer from the
    stored all-int8 activations."""
    producer = {op.outputs[0]: op.index for op in qg.ops}
    with torch.inference_mode():
        env = {qg.inputs[0]: fake_quant(_nchw(pixels), qg.tensors[qg.inputs[0]])}
        for op in qg.ops:
            env[op.outputs[0]] = _int8_op(op, qg, env)
        base = env[qg.outputs[0]].numpy()
        out = {}
        for t in candidates:
            local = dict(env)  # only the tensors from the producer on are recomputed
            for op in qg.ops[producer[t]:]:
                grid = int16_grid(qg.tensors[t]) if op.outputs[0] == t else None
                local[op.outputs[0]] = _int8_op(op, qg, local, grid)
            out[t] = local[qg.outputs[0]].numpy()
            if progress:
                progress(1)
    return base, out


def _bias(t: Tensor) -> np.ndarray:
    return t.data.astype(np.float64) * t.scale
