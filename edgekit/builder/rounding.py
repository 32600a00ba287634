"""Error-compensating rounding of int8 per-channel weights (the GPTQ / optimal-brain-quantization update).

Rounding each weight to its nearest grid point ignores what the layer's inputs look like. Here a layer's weights are
rounded one input column at a time, and the rounding error of each column is pushed onto the columns not yet
rounded, weighted by the inverse of the input covariance H = E[(x - mean)(x - mean)^T]. That minimises the output
error (w - q)^T H (w - q) instead of |w - q|^2. The covariance is centred because bias correction, which runs right
after, removes the mean part of the output error exactly. The grid (per-channel scales) is kept as it is, so the
result is the same int8 format, only better rounded.

Depthwise layers have one small problem per channel (k*k taps, each channel's own H); the others share one H across
output channels. Which layers: on the arm64 route the small fan-ins (`worth_it`); on the ONNX route (x86, onnx) every
convolution, because there the dense layers' int16-safe grids (saturation.py) are coarser than 8 bits and their
rounding is the largest error (lite1: 22.8 -> 23.5 dB with min/max ranges, 23.6 -> 24.6 with percentile ranges).
Build side only (torch).
"""
from __future__ import annotations

import numpy as np
import torch

DAMP = 0.01  # fraction of the mean diagonal added to H: keeps the inverse finite where inputs are (nearly) constant
MAX_FAN_IN = 32  # stem (27) and depthwise (9, 25) layers; see worth_it
MAX_SAMPLES = 2048  # patch positions per layer for the covariance (at least; see SAMPLES_PER_DIM)
SAMPLES_PER_DIM = 8  # wide layers (1x1 convolutions with hundreds of inputs) get this many samples per input


def worth_it(kind: str, shape: tuple[int, ...]) -> bool:
    """arm64 route: only small fan-ins, where one rounding error is a large share of a channel's output (8-bit grids
    everywhere there). Measured on lite0 (logit
    noise with only that layer kind's weights quantized, float elsewhere): stem 31.8 -> 47.0 dB, depthwise 32.9 ->
    38.5 dB; the 1x1 convolutions gained < 1.5 dB for 30 s more build time, and the classifier lost (1280 inputs
    against 64 images)."""
    fan_in = int(np.prod(shape[1:3])) if kind == "DEPTHWISE_CONV_2D" else int(np.prod(shape[1:]))
    return fan_in <= MAX_FAN_IN


def patch_covariance(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                     dilation: tuple[int, int], depthwise: bool) -> torch.Tensor:
    """Centred covariance of the layer's input patches. x: (N, C, H, W) already padded (or (N, C) for a dense
    layer). Returns (D, D) with D = C*kh*kw in OIHW flattening order, or (C, k, k) for a depthwise layer.
    About MAX_SAMPLES patch positions are used, or SAMPLES_PER_DIM per input for wide layers (the same seeded
    positions in every image): the covariance of k*k taps settles long before, and unfolding every position of a
    112x112 layer costs seconds."""
    if x.ndim == 2:
        return _centred(x.double()[None])[0]
    n, c = x.shape[:2]
    kh, kw = kernel
    oh = (x.shape[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (x.shape[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    d = kh * kw if depthwise else c * kh * kw
    keep = min(oh * ow, max(1, max(MAX_SAMPLES, SAMPLES_PER_DIM * d) // n))
    pos = torch.randperm(oh * ow, generator=torch.Generator().manual_seed(0))[:keep]
    ky, kx = torch.meshgrid(torch.arange(kh) * dilation[0], torch.arange(kw) * dilation[1], indexing="ij")
    rows = (pos // ow * stride[0])[:, None] + ky.reshape(1, -1)  # (P, k)
    cols = (pos % ow * stride[1])[:, None] + kx.reshape(1, -1)
    p = x[:, :, rows, cols]  # (N, C, P, k)
    if depthwise:  # per channel: samples (N*P) of k taps
        return _centred(p.permute(1, 0, 2, 3).reshape(c, -1, kh * kw))
    return _centred(p.permute(0, 2, 1, 3).reshape(1, -1, c * kh * kw))[0]


def _centred(s: torch.Tensor) -> torch.Tensor:
    """(B, samples, D) -> (B, D, D) centred covariance."""
    s = s - s.mean(1, keepdim=True)  # centred before the product: float32 is then accurate enough
    return (s.transpose(1, 2) @ s).double() / s.shape[1]


def _inverse_cholesky(h: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor of H^-1 (batched over leading dims), after damping; dead inputs get a unit diagonal."""
    h = h.clone()
    diag = h.diagonal(dim1=-2, dim2=-1)
    dead = diag <= 0
    diag[dead] = 1.0
    damp = DAMP * diag.mean(-1, keepdim=True)
    diag += damp
    inv = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(inv, upper=True)


def round_weights(w: np.ndarray, scale: np.ndarray, h: torch.Tensor, qmin: int = -127, qmax: int = 127) -> np.ndarray:
    """w: (O, D) float weights, scale: (O,) their grid, h: (D, D) shared or (O, D, D) per row. Returns int8 (O, D).
    Columns go in their natural order: GPTQ's act-order (largest input variance first) measured no better here
    (lite1 on onnx, percentile ranges: 24.41 dB against 24.59)."""
    W = torch.as_tensor(np.asarray(w, np.float64)).clone()
    s = torch.as_tensor(np.asarray(scale, np.float64)).reshape(-1)
    s = torch.where(s > 0, s, torch.ones_like(s))
    U = _inverse_cholesky(h)  # (D, D) or (O, D, D): U[..., i, :] is row i for every output channel alike
    q = torch.empty_like(W)
    for i in range(W.shape[1]):
        q[:, i] = torch.clamp(torch.round(W[:, i] / s), qmin, qmax)
        row = U[..., i, :]
        err = (W[:, i] - q[:, i] * s) / row[..., i]
        W[:, i + 1:] -= err[:, None] * row[..., i + 1:]
    return q.numpy().astype(np.int8)
