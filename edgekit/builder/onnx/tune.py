"""INT8-aware fine-tuning on the onnx route: the QDQ model as a trainable torch module (builder/int8_aware.py).

The student is the post-training QDQ model evaluated by simulate.Graph, the same arithmetic bias correction and
rounding use: activations on their calibrated uint8 grids, weights on their per-channel int8 grids (the int16-safe
grids of dense layers included). What trains is each Conv/Gemm's integer weights (held as floats in grid steps, rounded
straight-through) and its bias; the grids stay. `write_back` puts the rounded values into the QDQ model, so the target
stage converts it as it converts any post-training model. Dense layers keep the int16 pair guarantee (saturation.py):
a channel whose tuned weights would break it keeps its post-training weights.
"""
from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from edgekit.builder.fakequant import ste_round
from edgekit.builder.onnx import saturation
from edgekit.builder.onnx.simulate import Graph, attrs

WEIGHT_Q = (-127, 127)  # symmetric int8 weights, as the quantizer writes them


class QDQStudent(torch.nn.Module):
    def __init__(self, qmodel: onnx.ModelProto, ranges: bool = False):
        super().__init__()
        self.model = qmodel
        self.graph = Graph(qmodel, ste=True)
        self.output = qmodel.graph.output[0].name
        self.inits = {i.name: i for i in qmodel.graph.initializer}
        self.producer = producer = {o: n for n in qmodel.graph.node for o in n.output}
        self.w, self.b = torch.nn.ParameterList(), torch.nn.ParameterList()
        self.layers: dict[str, dict] = {}  # node name -> where its weights and bias live
        for node in qmodel.graph.node:
            if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2:
                continue
            if node.op_type == "Gemm" and not attrs(node).get("transB", 0):
                continue
            dq = producer.get(node.input[1])
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in self.inits:
                continue
            q = numpy_helper.to_array(self.inits[dq.input[0]])
            scale = numpy_helper.to_array(self.inits[dq.input[1]]).astype(np.float32).reshape(-1)
            entry = {"node": node, "weight": dq.input[0], "shape": q.shape,
                     "scale": torch.from_numpy(scale.reshape((-1,) + (1,) * (q.ndim - 1)).copy()),
                     "w": len(self.w), "b": None, "bias_init": None, "bias_scale": None}
            self.w.append(torch.nn.Parameter(torch.from_numpy(q.astype(np.float32))))
            bdq = producer.get(node.input[2]) if len(node.input) > 2 else None
            if bdq is not None and bdq.op_type == "DequantizeLinear" and bdq.input[0] in self.inits:
                bq = numpy_helper.to_array(self.inits[bdq.input[0]]).astype(np.float64)
                bs = numpy_helper.to_array(self.inits[bdq.input[1]]).astype(np.float64)
                entry.update(b=len(self.b), bias_init=bdq.input[0], bias_scale=bs, bias0=bq * bs)
            elif len(node.input) > 2 and node.input[2] in self.inits:  # a float bias
                entry.update(b=len(self.b), bias_init=node.input[2],
                             bias0=numpy_helper.to_array(self.inits[node.input[2]]).astype(np.float64))
            if entry["b"] is not None:  # what trains is the change: the bias itself stays exact (int32 > 2^24)
                entry["bias0_t"] = torch.from_numpy(entry["bias0"].astype(np.float32))
                self.b.append(torch.nn.Parameter(torch.zeros(len(entry["bias0"]))))
            self.layers[node.name] = entry
        # activation grids (ranges=True): each scale learned in log space (LSQ's gradient, through the rounding);
        # Q and DQ nodes naming one scale share it; the model input keeps its exact pixel grid
        self.s = torch.nn.ParameterList()
        self.scale_of: dict[str, int] = {}
        if ranges:
            pinned = {n.input[1] for n in qmodel.graph.node
                      if n.op_type == "QuantizeLinear" and n.input[0] == qmodel.graph.input[0].name}
            for n in qmodel.graph.node:
                if n.op_type == "QuantizeLinear" and n.input[0] not in self.inits and n.input[1] not in pinned \
                        and n.input[1] not in self.scale_of:
                    self.scale_of[n.input[1]] = len(self.s)
                    self.s.append(torch.nn.Parameter(torch.zeros(())))  # log of the factor on the calibrated scale

    def _hook(self, node: onnx.NodeProto, env: dict) -> None:
        if self.scale_of and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            k = self.scale_of.get(node.input[1])
            if k is not None:
                env[node.input[1]] = self.graph.consts[node.input[1]] * self.s[k].exp()
            return
        e = self.layers.get(node.name)
        if e is None:
            return
        env[node.input[1]] = ste_round(self.w[e["w"]]).clamp(*WEIGHT_Q) * e["scale"]
        if e["b"] is not None:
            env[node.input[2]] = e["bias0_t"] + self.b[e["b"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = None
        for _, env in self.graph.run(x, self._hook):
            pass
        return env[self.output]

    def write_back(self) -> dict:
        """The tuned integers, biases (and activation grids) into the QDQ model; returns what changed."""
        changed, kept = 0, 0
        for name, k in self.scale_of.items():
            v = (self.graph.consts[name] * self.s[k].detach().exp()).numpy().astype(np.float32)
            self.inits[name].CopyFrom(numpy_helper.from_array(v, name))
        producer = self.producer
        for e in self.layers.values():
            if e["bias_scale"] is not None and self.scale_of:  # int32 biases live on input scale x weight scale
                dq_in = producer.get(e["node"].input[0])
                if dq_in is not None and dq_in.op_type == "DequantizeLinear" and dq_in.input[1] in self.scale_of \
                        and float(self.s[self.scale_of[dq_in.input[1]]].detach()) != 0.0:
                    s_in = float(numpy_helper.to_array(self.inits[dq_in.input[1]]))  # already written above
                    bs = (s_in * e["scale"].numpy().reshape(-1)).astype(np.float32)
                    bdq = producer[e["node"].input[2]]
                    self.inits[bdq.input[1]].CopyFrom(numpy_helper.from_array(bs, bdq.input[1]))
                    e["bias_scale"] = bs.astype(np.float64)
        for e in self.layers.values():
            init = self.inits[e["weight"]]
            old = numpy_helper.to_array(init)
            q = torch.round(self.w[e["w"]].detach()).clamp(*WEIGHT_Q).numpy().astype(np.int8).reshape(e["shape"])
            if saturation.is_dense(e["node"]):
                bad = saturation.pair_steps_per_channel(q) > saturation.PAIR_STEPS + 1
                if bad.any():
                    q[bad] = old[bad]
                    kept += int(bad.sum())
            changed += int((q != old).sum())
            init.CopyFrom(numpy_helper.from_array(q, init.name))
            if e["b"] is not None:
                b = e["bias0"] + self.b[e["b"]].detach().double().numpy()
                binit = self.inits[e["bias_init"]]
                if e["bias_scale"] is not None:
                    s = np.where(e["bias_scale"] > 0, e["bias_scale"], 1.0)
                    new = np.clip(np.round(b / s), -2**31, 2**31 - 1).astype(np.int32)
                else:
                    new = b.astype(np.float32)
                binit.CopyFrom(numpy_helper.from_array(new, binit.name))
        return {"layers": len(self.layers), "activation_grids": len(self.scale_of), "weights_changed": changed,
                "weights": int(sum(int(np.prod(e["shape"])) for e in self.layers.values())),
                "pair_limited_channels_kept": kept}


class Teacher:
    """The FP32 model's logits, evaluated by the same simulator (x: raw pixels, NCHW)."""

    def __init__(self, fp32: onnx.ModelProto, batch: int = 16):
        self.graph, self.batch = Graph(fp32), batch
        self.output = fp32.graph.output[0].name

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), self.batch):
                env = None
                for _, env in self.graph.run(x[i:i + self.batch].float()):
                    pass
                out.append(env[self.output].float().numpy())
        return np.concatenate(out)
