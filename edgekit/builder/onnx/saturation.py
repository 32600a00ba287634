"""Weight grids that cannot overflow the int16 pair sums of x86 int8 kernels.

x86 CPUs without VNNI (AVX2, AVX-512F) multiply uint8 activations by int8 weights with vpmaddubsw: two adjacent
products are added into a saturating int16. With 8-bit weights, 255*127 + 255*127 overflows, and real layers lose
whole outputs (lite0 agreement fell to 90 % on an AVX2 EPYC). Measured on onnxruntime and OpenVINO with a one-layer
probe: the pairs are input channels (2i, 2i+1) of a 1x1 convolution (`_pairings` has the kxk case). So for dense
layers we choose each output channel's scale so that no same-sign pair of weights the kernels add can sum past 128
steps: 255 * 128 = 32640 fits int16 for every possible input. That costs far less than plain 7-bit weights (half the
grid everywhere), because a channel's two largest weights are rarely neighbours. Depthwise convolutions use another
kernel and keep plain 8-bit weights.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

PAIR_STEPS = 127  # before rounding; each weight rounds by at most half a step, so a pair stays <= 128 steps


def _pairings(w: np.ndarray) -> list[np.ndarray]:
    """The weight matrix (rows, K) in each K order whose adjacent columns x86 kernels sum in int16.

    Probed with one-layer models: onnxruntime pairs along the (kh, kw, cin) flattening; OpenVINO pairs input channels
    at each kernel position, padding odd channel counts. For 1x1 convolutions and fully connected layers both are
    simply (2i, 2i+1) over input channels."""
    if w.ndim != 4:
        return [w.reshape(w.shape[0], -1)]
    hwc = w.transpose(0, 2, 3, 1)
    padded = np.concatenate([hwc, np.zeros(hwc.shape[:3] + (hwc.shape[3] % 2,), w.dtype)], axis=3)
    return [hwc.reshape(w.shape[0], -1), padded.reshape(w.shape[0], -1)]


def _largest_pair(m: np.ndarray) -> np.ndarray:
    """Per row, the largest |a| + |b| over adjacent same-sign columns (2i, 2i+1); opposite signs partly cancel."""
    k = m.shape[1] // 2 * 2
    if not k:
        return np.zeros(m.shape[0], m.dtype)
    a, b = m[:, 0:k:2], m[:, 1:k:2]
    return np.where(np.sign(a) == np.sign(b), np.abs(a) + np.abs(b), 0).max(axis=1)


def pair_safe_scales(w: np.ndarray) -> np.ndarray:
    """Per-output-channel scales for a Conv (O, C, kh, kw) or Gemm (O, K) weight: the finest grid on which no
    weight exceeds 127 steps and no pair that the kernels sum in int16 exceeds PAIR_STEPS."""
    w = w.astype(np.float64)
    need = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    for m in _pairings(w):
        need = np.maximum(need, _largest_pair(m))
    return np.maximum(need / PAIR_STEPS, np.finfo(np.float32).tiny)


def pair_steps_per_channel(q: np.ndarray) -> np.ndarray:
    """Per output channel: the largest single weight or same-sign pair sum, in steps, over the kernels' pairings."""
    q = q.astype(np.int64)
    need = np.abs(q.reshape(q.shape[0], -1)).max(axis=1)
    for m in _pairings(q):
        need = np.maximum(need, _largest_pair(m))
    return need


def max_pair_steps(q: np.ndarray) -> int:
    """Largest int16 pair sum an all-255 input could meet, in weight steps, over the kernels' pairings."""
    return int(pair_steps_per_channel(q).max())


def is_dense(node: onnx.NodeProto) -> bool:
    """Ordinary convolutions and fully connected layers (depthwise convolutions run another kernel)."""
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    if node.op_type == "Gemm":
        return next((a.i for a in node.attribute if a.name == "transB"), 0) == 1
    return node.op_type == "Conv" and group == 1


def requantize_pair_safe(fmodel: onnx.ModelProto, qmodel: onnx.ModelProto) -> int:
    """Rewrite the int8 weights (and int32 biases) of every dense Conv / Gemm in the QDQ `qmodel` on pair-safe grids.

    `fmodel` is the FP32 model the QDQ model came from (nodes keep their names). Returns the number of layers."""
    finits = {i.name: i for i in fmodel.graph.initializer}
    fnodes = {n.name: n for n in fmodel.graph.node}
    qinits = {i.name: i for i in qmodel.graph.initializer}
    producer = {o: n for n in qmodel.graph.node for o in n.output}
    done = 0
    for node in qmodel.graph.node:
        fnode = fnodes.get(node.name)
        if node.op_type not in ("Conv", "Gemm") or fnode is None or fnode.input[1] not in finits:
            continue
        w = numpy_helper.to_array(finits[fnode.input[1]]).astype(np.float64)
        wdq = producer.get(node.input[1])
        if not is_dense(node) or wdq is None or wdq.op_type != "DequantizeLinear":
            continue
        old_scale = numpy_helper.to_array(qinits[wdq.input[1]]).astype(np.float64)
        scale = pair_safe_scales(w)
        q = np.clip(np.round(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -127, 127).astype(np.int8)
        qinits[wdq.input[0]].CopyFrom(numpy_helper.from_array(q, wdq.input[0]))
        qinits[wdq.input[1]].CopyFrom(numpy_helper.from_array(scale.astype(np.float32), wdq.input[1]))
        bdq = producer.get(node.input[2]) if len(node.input) > 2 else None
        if bdq is not None and bdq.op_type == "DequantizeLinear" and len(fnode.input) > 2:
            # int32 bias on the grid x_scale * w_scale: follow the new weight scale
            b = numpy_helper.to_array(finits[fnode.input[2]]).astype(np.float64)
            bscale = numpy_helper.to_array(qinits[bdq.input[1]]).astype(np.float64) * scale / old_scale
            bq = np.clip(np.round(b / bscale), -2**31, 2**31 - 1).astype(np.int32)
            qinits[bdq.input[0]].CopyFrom(numpy_helper.from_array(bq, bdq.input[0]))
            qinits[bdq.input[1]].CopyFrom(numpy_helper.from_array(bscale.astype(np.float32), bdq.input[1]))
        done += 1
    return done
