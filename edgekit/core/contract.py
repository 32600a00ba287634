"""The preprocessing block and input contracts a build writes into a manifest (device code only reads them)."""
from __future__ import annotations

import math

from edgekit.core.variants import Variant

INTERPOLATIONS = ("bicubic", "bilinear", "nearest")  # what preprocessing.interpolation may name
LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "int8", "uint8")  # what an artifact's input may be
INPUT_NAME = "pixels"  # the ONNX artifacts' input and output tensors
OUTPUT_NAME = "logits"


def preprocessing(variant: Variant) -> dict:
    return {"resize": variant.resize_size, "crop": variant.input_size, "interpolation": variant.interpolation,
            "resize_rule": "shorter side to round(input / crop_pct), aspect kept; center crop"}


def normalized_nchw(variant: Variant) -> dict:
    """What the PyTorch model takes: (pixel/255 - mean)/std, NCHW float32."""
    return {"layout": "NCHW", "dtype": "float32", "channels": "RGB",
            "shape": [1, 3, variant.input_size, variant.input_size],
            "mean": [255.0 * m for m in variant.mean], "std": [255.0 * s for s in variant.std],
            "quantization": None}


def pixels_nchw(variant: Variant) -> dict:
    """Raw 0..255 RGB pixels as float32 NCHW: the normalisation is folded into the model's first convolution."""
    return {"layout": "NCHW", "dtype": "float32", "channels": "RGB",
            "shape": [1, 3, variant.input_size, variant.input_size],
            "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "quantization": None,
            "note": "feed resized, center-cropped RGB pixels 0..255 as float32; no normalisation "
                    "(folded into the model)"}


def pixels_nhwc(variant: Variant) -> dict:
    """Raw 0..255 RGB pixels as float32 NHWC (the float .tflite reference of the arm64 target)."""
    return {**pixels_nchw(variant), "layout": "NHWC", "shape": [1, variant.input_size, variant.input_size, 3]}


def pixels_nhwc_int8(variant: Variant) -> dict:
    """What the fully-integer .tflite takes: NHWC RGB pixels as int8, q = pixel - 128 (scale 1, zero point -128).

    A device resizes, crops and casts; no float normalisation. Every pixel value is exact on this grid (the
    normalisation is folded into the first convolution), unlike the 1/128 grid of normalised inputs.
    """
    return {"layout": "NHWC", "dtype": "int8", "channels": "RGB",
            "shape": [1, variant.input_size, variant.input_size, 3],
            "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "quantization": {"scale": 1.0, "zero_point": -128},
            "note": "feed resized, center-cropped RGB pixels as int8: q = pixel - 128 (uint8 XOR 0x80)"}


CONTRACTS = {"pixels_nchw": pixels_nchw, "pixels_nhwc": pixels_nhwc, "pixels_nhwc_int8": pixels_nhwc_int8}


def for_artifacts(target, variant: Variant) -> dict[str, dict]:
    """Input contract of each artifact of a target's bundle: {"int8": ..., "fp32": ...}."""
    int8 = CONTRACTS[target.input_contract](variant)
    fp32 = CONTRACTS[target.fp32_input_contract or target.input_contract](variant)
    return {"int8": int8, "fp32": fp32}


def finite_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def problem(c: object) -> str | None:
    """What is wrong with an input contract a device would follow (None: nothing), in a few words."""
    def numbers(v, n):
        return isinstance(v, list) and len(v) == n and all(finite_number(x) for x in v)

    if not isinstance(c, dict):
        return "is not an object"
    if c.get("layout") not in LAYOUTS:
        return f"has layout {c.get('layout')!r}, not one of {', '.join(LAYOUTS)}"
    if c.get("dtype") not in DTYPES:
        return f"has dtype {c.get('dtype')!r}, not one of {', '.join(DTYPES)}"
    for key in ("mean", "std"):
        if not numbers(c.get(key), 3):
            return f"gives no {key} of three numbers"
    if any(s == 0 for s in c["std"]):
        return "has a std of 0"
    q = c.get("quantization")
    if q is not None:
        if not isinstance(q, dict) or not numbers([q.get("scale"), q.get("zero_point")], 2) or q["scale"] <= 0:
            return "has a quantization without a positive scale and a zero point"
        if c["dtype"] == "float32":
            return "quantizes a float32 input"
    elif c["dtype"] != "float32":
        return f"takes {c['dtype']} without a quantization"
    shape = c.get("shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) == 4
                                  and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        return "has a shape that is not four positive sizes"
    return None


def from_manifest(m: dict, precision: str) -> dict:
    """The input contract a bundle's artifact follows (the FP32 reference may take another one, e.g. float pixels)."""
    return m.get("fp32_input", m["input"]) if precision == "fp32" else m["input"]
