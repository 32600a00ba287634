"""Preprocessing in numpy + Pillow only: shared by calibration, validation, the bench harness and devices.

Two steps, each driven by plain data so a device can follow a manifest without the variant table:
1. `pixels(image, resize, crop, interpolation)` -> HWC uint8 RGB: shorter side to `resize`, center crop `crop`.
2. `to_input(pixels, contract)` -> the artifact's input tensor, exactly as the manifest's input contract says.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgekit.errors import ImageError

_INTERP = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
           "nearest": Image.Resampling.NEAREST}



def open_rgb(path: str | Path) -> Image.Image:
    """Decode an image fully (so truncation is caught here) and convert it to RGB."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:  # Pillow raises several kinds for unreadable/corrupt files
        raise ImageError(f"cannot read image {path}: {e}") from None


def resize_crop(img: Image.Image, resize: int, crop: int, interpolation: str) -> np.ndarray:
    """Shorter side to `resize` (aspect kept), then a center `crop` x `crop`; HWC uint8 RGB."""
    w, h = img.size
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nw, nh = int(resize * w / h), resize
    img = img.resize((nw, nh), _INTERP[interpolation])
    left = int(round((nw - crop) / 2.0))
    top = int(round((nh - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    return np.asarray(img, dtype=np.uint8)


def pixels(img: Image.Image, preprocessing: dict) -> np.ndarray:
    """Pixels for the manifest's `preprocessing` block {resize, crop, interpolation}."""
    return resize_crop(img, preprocessing["resize"], preprocessing["crop"], preprocessing["interpolation"])


def to_input(px: np.ndarray, contract: dict) -> np.ndarray:
    """HWC uint8 pixels (or a batch NHWC) -> the artifact's input, following the input contract.

    contract: {layout: NCHW|NHWC, dtype, mean: [3], std: [3] (applied to 0..255 pixels),
               quantization: null | {scale, zero_point}}
    """
    x = px[None] if px.ndim == 3 else px
    x = x.astype(np.float32)
    mean = np.asarray(contract["mean"], np.float32)
    std = np.asarray(contract["std"], np.float32)
    if np.any(mean != 0) or np.any(std != 1):
        x = (x - mean) / std
    q = contract.get("quantization")
    if q:
        info = np.iinfo(np.dtype(contract["dtype"]))
        x = np.clip(np.round(x / q["scale"] + q["zero_point"]), info.min, info.max)
    if contract["layout"] == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x.astype(np.dtype(contract["dtype"])))
