"""Integer arithmetic both routes' simulators share (builder/onnx/simulate.py on the QDQ graph,
builder/litert/simulate.py on the fully-integer .tflite), and the statistic both routes' bias correction uses."""
from __future__ import annotations

import numpy as np
import torch


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest in the forward pass, identity in the backward pass (straight-through estimator). Ties go
    to even, as torch.round, ONNX QuantizeLinear and the simulators do."""
    return x + (torch.round(x) - x).detach()


def mean_shift(yq, yf, clip: tuple[float, float] | None) -> np.ndarray:
    """Per output channel: the mean error of the INT8 output after the layer's activation, over the positions where
    the activation passes values (a bias shift only moves those; clipped positions would dilute the estimate)."""
    if yq.ndim == 4:  # (N, C, H, W) in channels-last memory -> a (N*H*W, C) view: sums over rows are fast
        yq, yf = yq.permute(0, 2, 3, 1).reshape(-1, yq.shape[1]), yf.permute(0, 2, 3, 1).reshape(-1, yf.shape[1])
    if clip is None:
        return (yq - yf).mean(dim=0).double().numpy()
    lo, hi = clip
    d = yq.clamp(lo, hi).sub_(yf.clamp(lo, hi))
    active = (d != 0).logical_or_((yf > lo).logical_and_(yf < hi))
    return (d.sum(dim=0).double() / active.sum(dim=0).clamp(min=1).double()).numpy()
