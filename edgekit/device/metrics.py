"""Drift figures between an INT8 artifact and its FP32 reference (numpy only)."""
from __future__ import annotations

import numpy as np

from edgekit.core import intervals


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    top = np.argsort(-logits, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def drift(fp32: np.ndarray, int8: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Agreement, top-1/top-5 against labels where known, logit SQNR and mean KL(fp32 || int8)."""
    n = len(fp32)
    same = fp32.argmax(1) == int8.argmax(1)
    p, q = _softmax(fp32.astype(np.float64)), _softmax(int8.astype(np.float64))
    kl = float(np.mean(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis=1)))
    err = float(((fp32 - int8) ** 2).sum())
    out = {"images": int(n), "top1_agreement": float(same.mean()),
           "top1_agreement_ci95": list(intervals.wilson(int(same.sum()), n)), "disagreements": int((~same).sum()),
           "logit_sqnr_db": float(10 * np.log10(float((fp32 ** 2).sum()) / err)) if err > 0 else float("inf"),
           "mean_kl": kl, "max_abs_logit_diff": float(np.abs(fp32 - int8).max())}
    if labels is not None and len(labels) == n and (labels >= 0).any():
        known = labels >= 0
        y = labels[known]
        out["labelled_images"] = int(known.sum())
        for name, logits in (("fp32", fp32[known]), ("int8", int8[known])):
            out[f"top1_{name}"] = topk_hits(logits, y, 1)
            out[f"top1_{name}_ci95"] = list(intervals.wilson(int(round(out[f"top1_{name}"] * len(y))), len(y)))
            if logits.shape[1] > 5:  # of five classes or fewer, top-5 is every class
                out[f"top5_{name}"] = topk_hits(logits, y, 5)
        out["top1_drop_points"] = 100.0 * (out["top1_fp32"] - out["top1_int8"])
        out["top1_drop_points_ci95"] = drop_interval(fp32[known].argmax(1) == y, int8[known].argmax(1) == y)
    return out


def drop_interval(right_fp32: np.ndarray, right_int8: np.ndarray) -> list[float]:
    """The 95 % interval of FP32 top-1 minus INT8 top-1, in points, judged on the same photos (paired)."""
    a = int((right_fp32 & right_int8).sum())
    b = int((right_fp32 & ~right_int8).sum())
    c = int((~right_fp32 & right_int8).sum())
    d = int((~right_fp32 & ~right_int8).sum())
    lo, hi = intervals.paired_difference(a, b, c, d)
    return [100.0 * lo, 100.0 * hi]


PER_CLASS_MAX = 100  # more classes than this (ImageNet-1k) and per-class figures on a few hundred images are noise


def per_class(fp32: np.ndarray, int8: np.ndarray, labels: np.ndarray | None, names) -> dict:
    """Top-1 of each class that has labelled images (FP32 and INT8, each with its Wilson interval: on 20 photos of
    a class one photo is 5 points), for models of a few classes; {} otherwise."""
    if labels is None or len(names) > PER_CLASS_MAX or not (labels >= 0).any():
        return {}
    rows = []
    for i, name in enumerate(names):
        mask = labels == i
        if mask.any():
            n, right = int(mask.sum()), {"fp32": int((fp32[mask].argmax(1) == i).sum()),
                                         "int8": int((int8[mask].argmax(1) == i).sum())}
            rows.append({"class": name, "images": n,
                         **{f"top1_{p}": k / n for p, k in right.items()},
                         **{f"top1_{p}_ci95": list(intervals.wilson(k, n)) for p, k in right.items()}})
    return {"per_class": rows}
