"""Layers left in float inside a QDQ INT8 model (the x86 and onnx targets' higher precision).

A layer in float reads the float tensor its producer computed (not the int8 copy other consumers read), and has the
FP32 model's weights and bias. Its output keeps the Q/DQ pair that the next int8 layer needs on its input, so
OpenVINO and onnxruntime run that one convolution in FP32 and everything around it in int8.

One subtlety: onnxruntime's QDQ quantizer drops a ReLU6 (Clip) that directly follows a convolution, because the
uint8 grid of the output clips the same way. A float consumer that reads the tensor before that grid must get the
Clip back, or it would see unclipped values.
"""
from __future__ import annotations

import onnx
from onnx import helper, numpy_helper

FLOAT_SUFFIX = "_float"


def quantized_layers(qmodel: onnx.ModelProto) -> list[str]:
    """Names of the Conv/Gemm nodes whose weights come through a DequantizeLinear (int8 layers), in graph order."""
    producer = {o: n for n in qmodel.graph.node for o in n.output}
    return [n.name for n in qmodel.graph.node if n.op_type in ("Conv", "Gemm") and len(n.input) > 1
            and getattr(producer.get(n.input[1]), "op_type", None) == "DequantizeLinear"]


def float_layers(fmodel: onnx.ModelProto, qmodel: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `qmodel` with the named Conv/Gemm nodes in float (inputs, weights and bias from `fmodel`)."""
    if not names:
        return qmodel
    out = onnx.ModelProto()
    out.CopyFrom(qmodel)
    g = out.graph
    fnodes = {n.name: n for n in fmodel.graph.node}
    finits = {i.name: i for i in fmodel.graph.initializer}
    fproducer = {o: n for n in fmodel.graph.node for o in n.output}
    producer = {o: n for n in g.node for o in n.output}
    known = set(quantized_layers(qmodel))
    unknown = [n for n in names if n not in known or n not in fnodes]
    if unknown:
        raise KeyError(f"not an int8 layer of this model: {unknown[0]}")
    new_inits, new_nodes = [], {}  # new_nodes: index to insert before -> nodes
    index = {n.name: i for i, n in enumerate(g.node)}
    for node in g.node:
        if node.name not in names:
            continue
        fnode = fnodes[node.name]
        # weights and bias: the FP32 model's initializers, under fresh names
        for k in range(1, min(len(node.input), len(fnode.input))):
            src = finits.get(fnode.input[k])
            if src is None:
                raise KeyError(f"{node.name}: FP32 input {fnode.input[k]} is not a constant")
            init = numpy_helper.from_array(numpy_helper.to_array(src), node.name + f"_in{k}" + FLOAT_SUFFIX)
            new_inits.append(init)
            node.input[k] = init.name
        # activation: the float tensor before its Q/DQ pair
        dq = producer.get(node.input[0])
        if dq is not None and dq.op_type == "DequantizeLinear":
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                src_name = q.input[0]
                clip = fproducer.get(src_name)
                qsrc = producer.get(src_name)
                if clip is not None and clip.op_type in ("Clip", "Relu") and (qsrc is None
                                                                            or qsrc.op_type != clip.op_type):
                    restored = src_name + "_clip" + FLOAT_SUFFIX
                    cnode = helper.make_node(clip.op_type, [src_name] + list(clip.input[1:]), [restored],
                                             name=node.name + "_clip" + FLOAT_SUFFIX)
                    for a in clip.attribute:
                        cnode.attribute.append(a)
                    for c in clip.input[1:]:
                        if c and c in finits and c not in {i.name for i in g.initializer} | {i.name for i in new_inits}:
                            new_inits.append(finits[c])
                    new_nodes.setdefault(index[node.name], []).append(cnode)
                    src_name = restored
                node.input[0] = src_name
    g.initializer.extend(new_inits)
    if new_nodes:
        nodes = list(g.node)
        del g.node[:]
        for i, n in enumerate(nodes):
            g.node.extend(new_nodes.get(i, []))
            g.node.append(n)
    _drop_unused(g)
    return out


def _drop_unused(g: onnx.GraphProto) -> None:
    """Remove nodes and initializers nothing reads any more (the float layers' int8 weights and their DQ nodes)."""
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
