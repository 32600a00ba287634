"""Read a .tflite flatbuffer into plain tensors and ops (build side: needs ai-edge-litert's schema module).

Constant buffers are numpy views into the model's bytes, so writing into one (a corrected bias) edits the model in
place without re-serialising it. Both buffer layouts are handled: data inside the flatbuffer, and the offset/size
form the quantizer uses for tensors stored after it.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np

from edgekit.errors import ModelError

_DTYPES = {"FLOAT32": np.float32, "INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32,
           "INT64": np.int64, "FLOAT16": np.float16, "BOOL": np.bool_}
FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16")
ACTIVATIONS = {0: None, 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}



LAYERS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")  # ops with int8 weights and an int32 bias


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    type: str  # TFLite TensorType name, e.g. INT8
    scale: np.ndarray | None = None  # per-tensor (1,) or per-channel
    zero_point: np.ndarray | None = None
    axis: int = 0  # quantized dimension of per-channel parameters
    data: np.ndarray | None = None  # constant: a writable view into the model bytes


@dataclass
class Op:
    index: int
    kind: str  # BuiltinOperator name, e.g. CONV_2D
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    buf: bytearray


def _schema():
    from ai_edge_litert import schema_py_generated as s

    return s


def _names(enum) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def _options(s, op, kind: str) -> dict:
    cls = {"CONV_2D": s.Conv2DOptions, "DEPTHWISE_CONV_2D": s.DepthwiseConv2DOptions,
           "FULLY_CONNECTED": s.FullyConnectedOptions, "ADD": s.AddOptions, "MEAN": s.ReducerOptions}.get(kind)
    table = op.BuiltinOptions()
    if cls is None or table is None:
        return {}
    o = cls()
    o.Init(table.Bytes, table.Pos)
    out: dict = {}
    if hasattr(o, "FusedActivationFunction"):
        out["activation"] = ACTIVATIONS.get(o.FusedActivationFunction(), "UNKNOWN")
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        out.update(stride=(o.StrideH(), o.StrideW()), dilation=(o.DilationHFactor(), o.DilationWFactor()),
                   padding="SAME" if o.Padding() == s.Padding.SAME else "VALID")
    if kind == "MEAN":
        out["keep_dims"] = bool(o.KeepDims())
    return out


def read(buf: bytes | bytearray) -> Graph:
    """Parse the first subgraph. Raises ModelError on anything that is not a readable TFLite model."""
    s = _schema()
    buf = buf if isinstance(buf, bytearray) else bytearray(buf)
    if len(buf) < 8 or bytes(buf[4:8]) != b"TFL3":
        raise ModelError("not a TFLite model (no TFL3 identifier)")
    try:
        m = s.Model.GetRootAsModel(buf, 0)
        g = m.Subgraphs(0)
        types, opnames = _names(s.TensorType), _names(s.BuiltinOperator)
        tensors = []
        for i in range(g.TensorsLength()):
            t = g.Tensors(i)
            tt = Tensor(i, t.Name().decode(), tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else (),
                        types.get(t.Type(), str(t.Type())))
            q = t.Quantization()
            if q is not None and q.ScaleLength():
                tt.scale = q.ScaleAsNumpy().astype(np.float64)
                tt.zero_point = q.ZeroPointAsNumpy().astype(np.int64)
                tt.axis = q.QuantizedDimension()
            b = m.Buffers(t.Buffer())
            if b is not None and tt.type in _DTYPES:
                dt = np.dtype(_DTYPES[tt.type])
                if b.Offset() > 1:
                    raw = np.frombuffer(buf, np.uint8, count=b.Size(), offset=b.Offset())
                else:
                    raw = b.DataAsNumpy() if b.DataLength() else None
                if raw is not None and len(raw):
                    tt.data = raw.view(dt).reshape(tt.shape)
            tensors.append(tt)
        ops = []
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            oc = m.OperatorCodes(op.OpcodeIndex())
            kind = opnames.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()), "CUSTOM")
            ops.append(Op(i, kind, [int(j) for j in op.InputsAsNumpy()], [int(j) for j in op.OutputsAsNumpy()],
                          _options(s, op, kind)))
        return Graph(tensors, ops, [int(j) for j in g.InputsAsNumpy()], [int(j) for j in g.OutputsAsNumpy()], buf)
    except ModelError:
        raise
    except Exception as e:  # a truncated flatbuffer fails deep inside the generated accessors
        raise ModelError(f"unreadable TFLite model: {type(e).__name__}: {e}") from None


def touching(g: Graph, j: int) -> list[Op]:
    """The ops that write or read tensor j: those that must change precision together with it."""
    return [op for op in g.ops if j in op.outputs or j in op.inputs]


def store_saturated(t: Tensor, values: np.ndarray) -> int:
    """Integer values into constant t's bytes, saturated to its dtype (int32 biases; int64 for a16w8 layers);
    returns how many did not fit."""
    info = np.iinfo(t.data.dtype)
    t.data[:] = np.clip(values, info.min, info.max).astype(t.data.dtype)
    return int(((values > info.max) | (values < info.min)).sum())


def inventory(g: Graph) -> dict:
    """Op counts, and every op that computes in float (an op reading or writing a float activation tensor)."""
    ops = collections.Counter(op.kind for op in g.ops)
    float_ops = []
    for op in g.ops:
        acts = [g.tensors[j] for j in op.inputs + op.outputs if j >= 0 and g.tensors[j].data is None]
        if any(t.type in FLOAT_TYPES for t in acts):
            float_ops.append(f"{op.kind}#{op.index}")
    float_tensors = [t.name for t in g.tensors if t.type in FLOAT_TYPES]
    io = {"input": [(g.tensors[j].type, list(g.tensors[j].shape)) for j in g.inputs],
          "output": [(g.tensors[j].type, list(g.tensors[j].shape)) for j in g.outputs]}
    return {"ops": dict(sorted(ops.items())), "float_ops": float_ops, "float_tensors": len(float_tensors),
            "tensor_types": dict(sorted(collections.Counter(t.type for t in g.tensors).items())), "io": io}
