"""EfficientNet-Lite architecture as plain data: the scaled block list and an analytic MAC count.

Pure Python: the build records the MACs in the manifest (the bench harness reads GMAC/s from there), `edgekit
variants` prints them, and the model in models/network.py is built from the same block list.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from edgekit.core.variants import Variant

STEM_CHANNELS = 32  # fixed for Lite (not scaled)
HEAD_CHANNELS = 1280  # fixed for Lite

# (block type, repeats, kernel, stride, expansion, out channels): the EfficientNet-B0 stages.
BASE_STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)


@dataclass(frozen=True)
class BlockSpec:
    kind: str  # "ds" (depthwise-separable) or "ir" (inverted residual)
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int

    @property
    def mid_ch(self) -> int:
        return self.in_ch * self.expand

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_ch == self.out_ch


def make_divisible(v: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """timm's channel rounding, so that our shapes match the upstream checkpoints."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def stages(variant: Variant) -> list[list[BlockSpec]]:
    """Scaled stages. Lite keeps the first and last stage's depth fixed; depth rounds up (timm's 'ceil')."""
    out: list[list[BlockSpec]] = []
    in_ch = STEM_CHANNELS
    last = len(BASE_STAGES) - 1
    for i, (kind, repeats, k, s, e, c) in enumerate(BASE_STAGES):
        n = repeats if i in (0, last) else int(math.ceil(repeats * variant.depth))
        out_ch = make_divisible(c * variant.width)
        blocks = []
        for j in range(n):
            blocks.append(BlockSpec(kind, k, s if j == 0 else 1, e, in_ch, out_ch))
            in_ch = out_ch
        out.append(blocks)
    return out


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) along one axis: asymmetric when the total is odd."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def count_macs(variant: Variant, size: int | None = None) -> int:
    """Multiply-accumulates of one forward pass (convolutions and the classifier)."""
    hw = size or variant.input_size

    def conv(h: int, cin: int, cout: int, k: int, s: int, groups: int = 1) -> tuple[int, int]:
        ho = -(-h // s)
        return ho, ho * ho * cout * (cin // groups) * k * k

    h, macs = conv(hw, 3, STEM_CHANNELS, 3, 2)
    for stage in stages(variant):
        for b in stage:
            if b.kind == "ir":
                _, m = conv(h, b.in_ch, b.mid_ch, 1, 1)
                macs += m
            h, m = conv(h, b.mid_ch, b.mid_ch, b.kernel, b.stride, groups=b.mid_ch)
            macs += m
            _, m = conv(h, b.mid_ch, b.out_ch, 1, 1)
            macs += m
    last_ch = stages(variant)[-1][-1].out_ch
    _, m = conv(h, last_ch, HEAD_CHANNELS, 1, 1)
    macs += m + HEAD_CHANNELS * variant.num_classes
    return macs
