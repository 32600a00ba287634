"""The preprocessing block and input contracts a build writes into a manifest (device code only reads them)."""
from __future__ import annotations

from .variants import Variant


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
