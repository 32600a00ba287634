"""Per-layer sensitivity of a QDQ INT8 model, and the activation ranges calibration chose (`edgekit analyze`).

Each int8 layer is put back in float on its own (mixed_precision.float_layers) and the whole model rerun with
onnxruntime on the analysis images; the layer's effect is what that recovers against the all-int8 model: logit SQNR
and top-1 agreement with FP32. onnxruntime rather than the torch simulation (simulate.py): its int8 kernels run a
lite0 image in ~10 ms against ~130 ms simulated, so a full sweep takes seconds per layer, not minutes.
Build side only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from edgekit.builder.onnx.mixed_precision import float_layers, quantized_layers
from edgekit.device import metrics


def session_logits(model: onnx.ModelProto, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Logits of an in-memory ONNX model over x (N, ...), one image at a time (the artifacts take batch 1)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


@dataclass(frozen=True)
class LayerEffect:
    layer: str
    kind: str  # conv, depthwise, dense (1x1 / fully connected)
    macs_share: float  # of the model's conv/gemm MACs: what running it in float costs, roughly
    sqnr_db: float  # logits vs FP32 with this layer in float, the rest int8
    agreement: float
    gain_db: float  # over the all-int8 model
    tensor: str | None = None  # TFLite: the activation tensor held in int16 (`layer` names its producer)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "kind": self.kind, "macs_share": round(self.macs_share, 4),
                "logit_sqnr_db": round(self.sqnr_db, 2), "top1_agreement": round(self.agreement, 4),
                "gain_db": round(self.gain_db, 2), **({"tensor": self.tensor} if self.tensor else {})}


def layer_kinds(model: onnx.ModelProto) -> dict[str, str]:
    out = {}
    for n in model.graph.node:
        if n.op_type == "Gemm":
            out[n.name] = "fully connected"
        elif n.op_type == "Conv":
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            k = next((list(a.ints) for a in n.attribute if a.name == "kernel_shape"), [1, 1])
            out[n.name] = "depthwise" if group > 1 else ("1x1" if k == [1, 1] else f"{k[0]}x{k[1]} conv")
    return out


def layer_macs(model: onnx.ModelProto) -> dict[str, int]:
    """Multiply-accumulates per Conv/Gemm from shapes onnx's shape inference gives."""
    m = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(m.graph.value_info) + list(m.graph.output)}
    inits = {i.name: tuple(i.dims) for i in m.graph.initializer}
    out = {}
    for n in m.graph.node:
        if n.op_type not in ("Conv", "Gemm"):
            continue
        w = inits.get(n.input[1])
        y = shapes.get(n.output[0])
        if w is None or not y:
            continue
        per_out = int(np.prod(w[1:]))
        out[n.name] = int(np.prod(y[1:])) * per_out if n.op_type == "Conv" else int(np.prod(w))
    return out


def rank_layers(fmodel: onnx.ModelProto, qmodel: onnx.ModelProto, x: np.ndarray,
                progress: Callable[[int], None] | None = None, layers: list[str] | None = None
                ) -> tuple[dict, list[LayerEffect]]:
    """The all-int8 drift and each int8 layer's effect (all of them, or `layers`) when it alone is float, most
    helpful first."""
    ref = session_logits(fmodel, x)
    base = metrics.drift(ref, session_logits(qmodel, x))
    kinds, macs = layer_kinds(fmodel), layer_macs(fmodel)
    total = max(1, sum(macs.values()))
    effects = []
    for name in quantized_layers(qmodel) if layers is None else layers:
        d = metrics.drift(ref, session_logits(float_layers(fmodel, qmodel, [name]), x))
        effects.append(LayerEffect(name, kinds.get(name, "?"), macs.get(name, 0) / total, d["logit_sqnr_db"],
                                   d["top1_agreement"], d["logit_sqnr_db"] - base["logit_sqnr_db"]))
        if progress:
            progress(1)
    effects.sort(key=lambda e: -e.gain_db)
    return base, effects


def activation_ranges(qmodel: onnx.ModelProto) -> list[dict]:
    """Every activation tensor's grid as calibration set it: (min, max) it can hold, scale, zero point."""
    inits = {i.name: numpy_helper.to_array(i) for i in qmodel.graph.initializer}
    out = []
    for n in qmodel.graph.node:
        if n.op_type != "QuantizeLinear" or n.input[1] not in inits:
            continue
        scale = float(np.asarray(inits[n.input[1]]).reshape(-1)[0])
        zp_arr = inits.get(n.input[2]) if len(n.input) > 2 else None
        zp = int(np.asarray(zp_arr).reshape(-1)[0]) if zp_arr is not None else 0
        info = np.iinfo(zp_arr.dtype if zp_arr is not None else np.uint8)
        out.append({"tensor": n.input[0], "min": round((info.min - zp) * scale, 6),
                    "max": round((info.max - zp) * scale, 6), "scale": scale, "zero_point": zp,
                    "dtype": str(info.dtype)})
    return out
