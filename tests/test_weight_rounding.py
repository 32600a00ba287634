"""Error-compensating weight rounding and the exact percentile tails (fast, no ../shared needed)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgekit.builder import rounding
from edgekit.builder.litert.quantize import _Tails


def _correlated_images(n=16, c=8, hw=20, seed=0):
    """Smooth, offset inputs (neighbouring taps correlate, as in images): where rounding to nearest is poor."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, hw + 4, hw + 4, generator=g)
    return F.avg_pool2d(x, 5, 1) * 4 + 2


def _output_error(x, w, q_scaled, groups):
    """Centred output error power: the mean part is bias correction's job."""
    e = F.conv2d(x, w - q_scaled, groups=groups)
    return float((e - e.mean((0, 2, 3), keepdim=True)).pow(2).mean())


@pytest.mark.parametrize("depthwise", [False, True])
def test_rounding_lowers_the_output_error_and_keeps_the_grid(depthwise):
    x = _correlated_images()
    c = x.shape[1]
    g = torch.Generator().manual_seed(1)
    w = torch.randn(c if depthwise else 16, 1 if depthwise else c, 3, 3, generator=g, dtype=torch.float64)
    scale = w.abs().flatten(1).max(1).values.numpy() / 127 * 4  # a coarse grid makes the difference visible
    h = rounding.patch_covariance(x, (3, 3), (1, 1), (1, 1), depthwise)
    assert h.shape == ((c, 9, 9) if depthwise else (c * 9, c * 9))
    q = rounding.round_weights(w.flatten(1).numpy(), scale, h)
    assert q.dtype == np.int8 and q.min() >= -127 and q.max() <= 127
    nearest = np.clip(np.round(w.flatten(1).numpy() / scale[:, None]), -127, 127)
    assert np.abs(q - nearest).max() >= 1  # it did change something
    s = torch.as_tensor(scale).reshape(-1, 1, 1, 1)
    groups = c if depthwise else 1
    xd = x.double()
    err_gptq = _output_error(xd, w, torch.as_tensor(q, dtype=torch.float64).reshape(w.shape) * s, groups)
    err_near = _output_error(xd, w, torch.as_tensor(nearest).reshape(w.shape) * s, groups)
    assert err_gptq < 0.7 * err_near


def test_patch_covariance_matches_unfold():
    x = _correlated_images(n=2, c=3, hw=9)
    h = rounding.patch_covariance(x, (3, 3), (2, 2), (1, 1), False)
    p = F.unfold(x, 3, stride=2).permute(0, 2, 1).reshape(-1, 27).double()
    ref = torch.cov(p.T, correction=0)
    assert torch.allclose(h, ref, atol=1e-5)


def test_tails_are_exact_percentiles():
    rng = np.random.default_rng(0)
    images = [rng.standard_cauchy((7, 7, 5)).astype(np.float32) for _ in range(40)]
    allv = np.sort(np.concatenate([a.ravel() for a in images]))
    for k in (1, 3, 25):
        t = _Tails(k)
        for a in images:
            t.add(a)
        assert t.range() == (float(allv[k - 1]), float(allv[-k]))
