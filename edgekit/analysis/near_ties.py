"""The near ties that decide a top-1 agreement budget: validation images FP32 itself barely decides (numpy only).

An INT8 model adds noise to every logit; an image flips when the noise on its FP32 top-1 minus top-2 logit exceeds
that margin. With a few hundred validation images, a handful of near ties decide whether 99.3 % holds.
"""
from __future__ import annotations

import numpy as np


def flip_probability(margin: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """P(top-1 changes) for FP32 margins under Gaussian noise of `sd` (per image) on the top-1 minus top-2 logit."""
    from math import erfc, sqrt

    return np.array([0.5 * erfc(m / (s * sqrt(2))) if s > 0 else float(m <= 0) for m, s in zip(margin, sd)])


def top2_margins(fp32: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: FP32's top-1 class, its runner-up, and the logit margin between them."""
    order = np.argsort(-fp32, axis=1)
    top1, top2 = order[:, 0], order[:, 1]
    rows = np.arange(len(fp32))
    return top1, top2, fp32[rows, top1] - fp32[rows, top2]


def analyse(fp32: np.ndarray, best: np.ndarray, runs: list[np.ndarray], ids: list[str],
            allowed: int | None = None, labels: np.ndarray | None = None) -> dict:
    """The near ties behind the disagreements of one or more INT8 models.

    INT8 noise on each image's FP32 top-1 minus top-2 logit flips every image whose margin it exceeds. The noise
    grows with the logits (confident images have larger logits and larger absolute errors), so it is measured
    relative to each image's FP32 top-1 logit, on `best` (one INT8 model's logits): a fixed spread in logits would
    overstate it on near ties, which are the uncertain, low-logit images. Under that noise (Gaussian) the expected
    number of disagreements is the sum of each image's flip probability; at half the noise (6 dB more logit SQNR)
    too. Each image any of `runs` (INT8 models' logits) flipped is listed with its FP32 margin, how many did, and
    (with `labels`, -1 where unknown) whether FP32 had it right: those flips are what a top-1 drop is made of."""
    rows = np.arange(len(fp32))
    top1, top2, margin = top2_margins(fp32)
    scale = np.maximum(np.abs(fp32[rows, top1]), 1e-6)
    err = best - fp32
    relative = float(((err[rows, top1] - err[rows, top2]) / scale).std())
    sd = relative * scale
    flipped = np.sum([run.argmax(1) != top1 for run in runs], axis=0)
    listed = sorted(np.nonzero(flipped)[0], key=lambda i: (-flipped[i], margin[i]))
    out = {"images": int(len(fp32)), "models": len(runs), "relative_margin_noise": round(relative, 5),
           "images_within_2_sd": int((margin < 2 * sd).sum()),
           "expected_disagreements": round(float(flip_probability(margin, sd).sum()), 2),
           "expected_disagreements_at_half_noise": round(float(flip_probability(margin, sd / 2).sum()), 2),
           "flipped_by_every_model": int((flipped == len(runs)).sum()),
           "flipped": [{"id": str(ids[i]), "fp32_margin": round(float(margin[i]), 4),
                        "flipped_in_models": int(flipped[i]),
                        **({"fp32_correct": bool(labels[i] == top1[i])}
                           if labels is not None and labels[i] >= 0 else {})} for i in listed]}
    if allowed is not None:
        out["allowed_disagreements"] = int(allowed)
    return out
