"""Preprocessing in numpy + Pillow only: shared by calibration, validation, the bench harness and devices.

Two steps, each driven by plain data so a device can follow a manifest without the variant table:
1. `pixels(image, resize, crop, interpolation)` -> HWC uint8 RGB: shorter side to `resize`, center crop `crop`.
2. `to_input(pixels, contract)` -> the artifact's input tensor, exactly as the manifest's input contract says.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from edgekit.errors import ImageError

_INTERP = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
           "nearest": Image.Resampling.NEAREST}



MAX_PIXELS = 100_000_000  # 100 MP (300 MB as RGB): above any camera's photo; refused before decoding
MAX_RESIZED = 16  # the resized image may hold 16 x resize^2 pixels (a 16:1 panorama); beyond, only the crop is made
_HIGH_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16-bit greyscale PNGs (Pillow opens some as 32-bit "I")


def to_rgb(im: Image.Image) -> Image.Image:
    """As a person sees it: the EXIF orientation applied (phone photos are stored sideways), high-bit-depth
    greyscale scaled to 8 bits (Pillow's own conversion clips it at 255), then RGB."""
    if im.getexif().get(0x0112, 1) != 1:  # checked first: exif_transpose copies even an upright image
        im = ImageOps.exif_transpose(im)
    if im.mode in _HIGH_BIT:
        a = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8), "L")
    return im if im.mode == "RGB" else im.convert("RGB")


def open_rgb(path: str | Path) -> Image.Image:
    """Decode an image fully (so truncation is caught here) and convert it to RGB as a person sees it; an image of
    more than MAX_PIXELS is refused from its header, before anything is decoded."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"image {path} is {w}x{h} ({w * h / 1e6:.0f} MP): more than edgekit reads "
                                 f"({MAX_PIXELS / 1e6:.0f} MP); downscale it first")
            im.load()
            return to_rgb(im)
    except ImageError:
        raise
    except Exception as e:  # Pillow raises several kinds for unreadable/corrupt files
        raise ImageError(f"cannot read image {path}: {e}") from None


def resize_crop(img: Image.Image, resize: int, crop: int, interpolation: str) -> np.ndarray:
    """Shorter side to `resize` (aspect kept), then a center `crop` x `crop`; HWC uint8 RGB.

    Memory stays bounded for any shape: where the resized image would exceed MAX_RESIZED x resize^2 pixels (a 1 x
    60000 image would be 256 x 15,360,000), only the crop's part of the source is resampled (Pillow's `box`), which
    no photograph's shape reaches, so ordinary images take the path that validated the bundle."""
    w, h = img.size
    if w <= h:
        nw, nh = resize, max(1, int(resize * h / w))
    else:
        nw, nh = max(1, int(resize * w / h)), resize
    left = int(round((nw - crop) / 2.0))
    top = int(round((nh - crop) / 2.0))
    if nw * nh > MAX_RESIZED * resize * resize:
        sx, sy = w / nw, h / nh
        box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
        return np.asarray(img.resize((crop, crop), _INTERP[interpolation], box=box), dtype=np.uint8)
    if w >= h:
        # Pillow resizes a landscape image in two passes, columns then rows, through an 8-bit image between them
        # (a tall one, from Pillow 13, may go rows first); made as two calls, the columns the crop drops never reach
        # the second pass: 13 % less work on a 640x480 frame, and every pixel the one call's (tested)
        if nw != w:
            img = img.resize((nw, h), _INTERP[interpolation])
        img = img.crop((left, 0, left + crop, h))
        if nh != h:
            img = img.resize((crop, nh), _INTERP[interpolation])
        return np.asarray(img.crop((0, top, crop, top + crop)), dtype=np.uint8)
    img = img.resize((nw, nh), _INTERP[interpolation])
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
    mean = np.asarray(contract["mean"], np.float32)
    std = np.asarray(contract["std"], np.float32)
    normalised = bool(np.any(mean != 0) or np.any(std != 1))
    q = contract.get("quantization")
    info = np.iinfo(np.dtype(contract["dtype"])) if q else None
    if x.dtype == np.uint8 and q and not normalised and q["scale"] == 1 and float(q["zero_point"]).is_integer():
        # pixels shifted by an integer zero point (arm64's q = pixel - 128): the float path's values, in integers
        x = np.clip(x.astype(np.int16) + int(q["zero_point"]), info.min, info.max)
    else:
        x = x.astype(np.float32)
        if normalised:
            x = (x - mean) / std
        if q:
            x = np.clip(np.round(x / q["scale"] + q["zero_point"]), info.min, info.max)
    if contract["layout"] == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x.astype(np.dtype(contract["dtype"])))
