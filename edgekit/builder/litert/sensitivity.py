"""Per-tensor sensitivity of a fully-integer .tflite (`edgekit analyze --target arm64`, the arm64 accuracy budget).

On TFLite the higher precision that stays integer-only is 16-bit activations with 8-bit weights (a16w8). It pays
only per tensor: one a16w8 op between int8 neighbours gets QUANTIZE ops on both sides and rounds to int8 as before,
so a tensor gains only when its producer and every consumer run a16w8. Each activation tensor is therefore put on
its int16 grid on its own (simulate.int16_sensitivity: simulated integer arithmetic, the same evaluator bias
correction uses) and the logits compared with the float model's. The cost side is the share of MACs in the ops that
must turn a16w8: XNNPACK has no int16 kernels, so those ops fall back to TFLite's reference kernels (int16 on lite0's
first conv alone made the model 4.4x slower; on its classifier, 1.6 % slower: measured in ai-edge-litert on x86).
Build side only (torch).
"""
from __future__ import annotations

import numpy as np

from edgekit.builder.litert import simulate
from edgekit.builder.litert.graph import LAYERS, Graph, Op, touching
from edgekit.builder.onnx.sensitivity import LayerEffect
from edgekit.device import metrics


def short_name(name: str) -> str:
    """The module path litert-torch buried in a tensor name: '.../Sequential_blocks/Sequential_1/
    InvertedResidual_0/Conv2dSame_conv_pwl;2' -> 'blocks.1.0.conv_pwl' (its fused names are ';'-joined: the
    deepest one naming a convolution or linear module wins)."""
    best, best_key = "", (-1, -1)
    for part in name.split(";"):
        segs = [s.rsplit(".", 1)[-1] for s in part.split("/")[2:]]  # past the I/O wrapper and the model
        attrs = [s.split("_", 1)[1] for s in segs if "_" in s]
        key = (int(bool(segs) and ("Conv" in segs[-1] or "Linear" in segs[-1])), len(attrs))
        if attrs and key > best_key:
            best, best_key = ".".join(attrs), key
    return best


def op_macs(g: Graph, op: Op) -> int:
    if op.kind not in LAYERS:
        return 0
    w = g.tensors[op.inputs[1]].shape
    out = g.tensors[op.outputs[0]].shape
    per_out = {"CONV_2D": int(np.prod(w[1:])), "DEPTHWISE_CONV_2D": int(np.prod(w[1:3])),
               "FULLY_CONNECTED": int(w[-1])}[op.kind]
    return int(np.prod(out[1:])) * per_out


def _label(g: Graph, op: Op) -> str:
    """'blocks.1.0.conv_pwl', 'blocks.1.1 add', 'logits', 'mean#59'."""
    t = op.outputs[0]
    if t in g.outputs:
        return "logits"
    path = short_name(g.tensors[t].name)
    if not path:
        return f"{op.kind.lower()}#{op.index}"
    return path if op.kind in LAYERS else f"{path} {op.kind.lower()}"


def _kind(g: Graph, op: Op) -> str:
    if op.kind == "CONV_2D":
        kh, kw = g.tensors[op.inputs[1]].shape[1:3]
        return "1x1" if (kh, kw) == (1, 1) else f"{kh}x{kw} conv"
    return {"DEPTHWISE_CONV_2D": "depthwise", "FULLY_CONNECTED": "fully connected"}.get(op.kind, op.kind.lower())


def candidates(qg: Graph, max_macs_share: float = 1.0) -> dict[int, float]:
    """int8 activation tensors whose a16w8 ops (producer and consumers) hold at most max_macs_share of the MACs,
    with that share."""
    macs = {op.index: op_macs(qg, op) for op in qg.ops}
    total = max(1, sum(macs.values()))
    share = {}
    for op in qg.ops:
        t = op.outputs[0]
        if qg.tensors[t].type == "INT8":
            share[t] = sum(macs[o.index] for o in touching(qg, t)) / total
    return {t: m for t, m in share.items() if m <= max_macs_share}


def rank_tensors(fg: Graph, qg: Graph, pixels: np.ndarray, share: dict[int, float], progress=None
                 ) -> tuple[dict, list[LayerEffect]]:
    """The all-int8 drift and the effect of each tensor in `share` (candidates()) when it alone is int16, most
    helpful first. `layer` names the tensor's producer; macs_share is the share of MACs in the ops that would run
    a16w8."""
    ref = simulate.run(fg, qg, pixels)["float"]
    base_logits, each = simulate.int16_sensitivity(qg, pixels, list(share), progress)
    base = metrics.drift(ref, base_logits)
    producer = {op.outputs[0]: op for op in qg.ops}
    effects = []
    for t, logits in each.items():
        op = producer[t]
        d = metrics.drift(ref, logits)
        effects.append(LayerEffect(_label(qg, op), _kind(qg, op), share[t], d["logit_sqnr_db"], d["top1_agreement"],
                                   d["logit_sqnr_db"] - base["logit_sqnr_db"], tensor=qg.tensors[t].name))
    effects.sort(key=lambda e: -e.gain_db)
    return base, effects


def activation_ranges(qg: Graph) -> list[dict]:
    """Every activation tensor's grid as calibration set it (the input's is the pinned pixel grid)."""
    producer = {op.outputs[0]: op for op in qg.ops}
    out = []
    for t in qg.tensors:
        if t.data is not None or t.scale is None or t.type not in ("INT8", "INT16"):
            continue
        name = _label(qg, producer[t.index]) if t.index in producer else "pixels"
        info = np.iinfo(np.int8 if t.type == "INT8" else np.int16)
        s, z = float(t.scale[0]), int(t.zero_point[0])
        out.append({"tensor": name, "min": round((info.min - z) * s, 6),
                    "max": round((info.max - z) * s, 6), "scale": s, "zero_point": z, "dtype": t.type.lower()})
    return out
