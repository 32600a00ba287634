"""Training-time augmentation (kornia, on batches): random resized crop, horizontal flip, mild colour jitter. What
the model is evaluated on is never augmented: the variant's own resize and center crop."""
from __future__ import annotations

import torch

CROP_SCALE = (0.25, 1.0)  # share of the canvas a random crop covers
JITTER = dict(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.8)


def augmenter(size: int):
    """uint8-range NCHW float batches in [0, 1] -> augmented [0, 1] batches of size x size. Its randomness is
    torch's global generator: seeded, it repeats."""
    import kornia.augmentation as K

    return K.AugmentationSequential(
        K.RandomResizedCrop((size, size), scale=CROP_SCALE, ratio=(3 / 4, 4 / 3), resample="bicubic"),
        K.RandomHorizontalFlip(),
        K.ColorJitter(**JITTER),
    )


def normalize(x01: torch.Tensor, mean, std) -> torch.Tensor:
    """[0, 1] RGB -> the model's input ((x - mean) / std, the variant's constants)."""
    m = torch.tensor(mean, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
    return (x01 - m) / s


def to_tensor(px, device) -> torch.Tensor:
    """NHWC uint8 pixels (a numpy or memmap slice) -> NCHW float [0, 1] on `device`."""
    import numpy as np

    t = torch.from_numpy(np.ascontiguousarray(px)).to(device)
    return t.permute(0, 3, 1, 2).float().div_(255.0)
