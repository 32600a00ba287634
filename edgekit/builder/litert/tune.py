"""INT8-aware fine-tuning on the litert route: the fully-integer .tflite as a trainable torch module
(builder/int8_aware.py).

The student evaluates the int8 graph as simulate.py does (every activation rounded and clamped onto its int8 grid,
per-channel int8 weights, the fused activations), with each layer's integer weights (held as floats in grid steps,
rounded straight-through) and its bias trainable; the grids stay. `write_back` stores the rounded values into the
model's bytes (int8 weights, int32 biases saturated), so the artifact is the quantizer's graph with other integers.
"""
from __future__ import annotations

import numpy as np
import torch

from edgekit.builder.fakequant import ste_round
from edgekit.builder.litert import simulate
from edgekit.builder.litert.graph import LAYERS, Graph, Tensor, store_saturated

WEIGHT_Q = (-127, 127)  # symmetric int8 weights (ai-edge-quantizer's static_wi8_ai8)


def _grid_shape(t: Tensor) -> list[int]:
    shape = [1] * len(t.data.shape)
    if t.scale.size > 1:
        shape[t.axis] = -1
    return shape


class TFLiteStudent(torch.nn.Module):
    def __init__(self, qg: Graph):
        super().__init__()
        for op in qg.ops:
            if op.kind not in simulate.SUPPORTED:
                raise simulate.UnsupportedOp(f"INT8-aware fine-tuning cannot simulate the graph's {op.kind} op (float "
                                             "ops of --allow-float): build without --int8-aware")
        self.g = qg
        self.w, self.b = torch.nn.ParameterList(), torch.nn.ParameterList()
        self.scales: dict[int, torch.Tensor] = {}
        self.b0: list[torch.Tensor] = []
        self.layer_ops = [op for op in qg.ops if op.kind in LAYERS]
        for op in self.layer_ops:
            wt, bt = qg.tensors[op.inputs[1]], qg.tensors[op.inputs[2]]
            self.scales[op.index] = torch.from_numpy(
                np.asarray(wt.scale, np.float32).reshape(_grid_shape(wt)).copy())
            self.w.append(torch.nn.Parameter(torch.from_numpy(wt.data.astype(np.float32))))
            # what trains is the change: the bias itself stays exact (int32 values beyond float32's 2^24)
            self.b0.append(torch.from_numpy(simulate._bias(bt).astype(np.float32)))
            self.b.append(torch.nn.Parameter(torch.zeros(bt.data.size)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.g
        env = {g.inputs[0]: simulate.fake_quant(x, g.tensors[g.inputs[0]])}
        last = simulate._last_use(g)
        k = 0
        for op in g.ops:
            out_t = g.tensors[op.outputs[0]]
            if op.kind in LAYERS:
                w = ste_round(self.w[k]).clamp(*WEIGHT_Q) * self.scales[op.index]
                acc = simulate._layer(op, env[op.inputs[0]], simulate._torch_weight(op, w), None)
                b = (self.b0[k] + self.b[k]).reshape([1, -1] + [1] * (acc.ndim - 2))
                y = simulate.fake_quant(simulate._activation(op, acc + b), out_t, ste=True)
                k += 1
            elif op.kind == "QUANTIZE":
                y = simulate.fake_quant(env[op.inputs[0]], out_t, ste=True)
            else:
                y = simulate.fake_quant(simulate._other(op, g, env), out_t, ste=True)
            env[op.outputs[0]] = y
            simulate._release(op, env, last)
        return env[g.outputs[0]]

    def write_back(self) -> dict:
        """The tuned integers into the model's bytes (g.buf); returns what changed."""
        changed, weights, saturated = 0, 0, 0
        for k, op in enumerate(self.layer_ops):
            wt, bt = self.g.tensors[op.inputs[1]], self.g.tensors[op.inputs[2]]
            q = torch.round(self.w[k].detach()).clamp(*WEIGHT_Q).numpy().astype(wt.data.dtype)
            changed += int((q != wt.data).sum())
            weights += q.size
            wt.data[...] = q
            steps = np.round(self.b[k].detach().double().numpy() / bt.scale).astype(np.int64)
            saturated += store_saturated(bt, bt.data.astype(np.int64) + steps)
        return {"layers": len(self.layer_ops), "weights_changed": changed, "weights": weights,
                "saturated_biases": saturated}


def teacher_logits(fg: Graph, x: torch.Tensor, batch: int = 16) -> np.ndarray:
    """The float .tflite's logits, evaluated in torch as simulate.py evaluates it (x: raw pixels, NCHW)."""
    last = simulate._last_use(fg)
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            env = {fg.inputs[0]: x[i:i + batch].float()}
            for op in fg.ops:
                env[op.outputs[0]] = simulate.float_op(op, fg, env)
                simulate._release(op, env, last)
            out.append(env[fg.outputs[0]].float().numpy())
    return np.concatenate(out)
