"""The automatic check after every export: the artifact against PyTorch on real images, for both routes."""
from __future__ import annotations

import numpy as np

from edgekit.device.preprocess import to_input

PARITY_IMAGES = 8  # calibration images each export is checked on


def parity(reference, candidate, pixels: np.ndarray, contract: dict, tolerance: float, error) -> dict:
    """Logits of `candidate(x)` against `reference(x)` on real images, x per `contract`; raises error(message) when
    the largest difference exceeds `tolerance`. Shared by every exporter's automatic check."""
    worst = 0.0
    top1_same = 0
    for p in pixels:
        x = to_input(p, contract)
        ref, got = reference(x), candidate(x)
        worst = max(worst, float(np.abs(ref - got).max()))
        top1_same += int(ref.argmax() == got.argmax())
    if worst > tolerance:
        raise error(f"max |diff| {worst:.2e} > {tolerance:.0e} on {len(pixels)} images")
    return {"images": int(len(pixels)), "max_abs_diff": worst, "tolerance": tolerance,
            "top1_equal": f"{top1_same}/{len(pixels)}"}
