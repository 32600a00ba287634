"""95 % intervals for the accuracy figures edgekit prints and records: a top-1, an agreement, a drop.

On a few hundred photos one photo moves a proportion by a third of a point, so a bare figure says less than it
seems. Pure Python (both sides read it):
- a proportion (top-1 against labels, INT8/FP32 agreement): Wilson's score interval, which stays inside [0, 1] and
  keeps its coverage near 0 and 1, where these figures live (a Wald interval collapses to a point at 100 %);
- a drop (FP32 top-1 minus INT8 top-1, the same photos judged by both models): Newcombe's paired score interval
  (1998, method 10), built from the two Wilson intervals and the correlation of the pairs; the photos both models
  get right or wrong narrow it, which an unpaired interval would ignore.
"""
from __future__ import annotations

import math

Z95 = 1.959963984540054  # the two-sided 95 % point of the normal distribution


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for k successes in n trials, as fractions; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def paired_difference(both: int, only_first: int, only_second: int, neither: int,
                      z: float = Z95) -> tuple[float, float]:
    """Newcombe's interval for p1 - p2 of paired outcomes (method 10): `only_first` pairs where the first is right
    and the second wrong, and so on. Fractions, within [-1, 1]."""
    a, b, c, d = both, only_first, only_second, neither
    n = a + b + c + d
    if n == 0:
        return -1.0, 1.0
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, z)
    l2, u2 = wilson(a + c, n, z)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        phi = 0.0
    else:
        ad_bc = a * d - b * c
        # Newcombe's continuity correction of the correlation, applied where it is positive
        phi = (max(ad_bc - n / 2, 0.0) if ad_bc > 0 else ad_bc) / math.sqrt(margins)
    theta = p1 - p2
    lower = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, theta - lower), min(1.0, theta + upper)


def percent(value: float, interval: tuple[float, float] | list[float] | None, digits: int = 2) -> str:
    """`99.00 % [97.7, 99.6]`: a fraction as a percentage with its interval's ends (one decimal)."""
    text = f"{100 * value:.{digits}f} %"
    if interval is None:
        return text
    lo, hi = interval
    return f"{text} [{100 * lo:.1f}, {100 * hi:.1f}]"


def cell(value: float | None, interval: tuple[float, float] | list[float] | None) -> str:
    """A table cell: `99.00% [97.1, 99.7]`, '' for no figure."""
    if value is None:
        return ""
    return percent(value, interval).replace(" %", "%", 1)


def points(value: float, interval: tuple[float, float] | list[float] | None, unit: str = " points") -> str:
    """`0.33 points [-0.6, 1.5]`: a drop in top-1 points with its interval's ends (`unit=""` in a table's cell)."""
    text = f"{value:.2f}{unit}"
    if interval is None:
        return text
    lo, hi = interval
    return f"{text} [{lo:.1f}, {hi:.1f}]"


def agreement_and_sqnr(v: dict) -> str:
    """One model's validation figures in a phrase (`agreement 99.00 % [97.7, 99.6], logit SQNR 25.30 dB`), from a
    record with `top1_agreement`, `logit_sqnr_db` and, where known, `top1_agreement_ci95`."""
    return (f"agreement {percent(v.get('top1_agreement') or 0, v.get('top1_agreement_ci95'))}, "
            f"logit SQNR {v.get('logit_sqnr_db') or 0:.2f} dB")


def images_for_agreement(min_agreement: float, z: float = Z95) -> int | None:
    """About how many photos an agreement interval needs to be no wider than 1 - `min_agreement` on either side,
    at that agreement (half-width about z * sqrt(a (1 - a) / n)); None for 100 %, which no number of photos shows."""
    return None if min_agreement >= 1 else math.ceil(z * z * min_agreement / (1 - min_agreement))


def images_to_resolve(budget_points: float, rate: float = 0.01, z: float = Z95) -> int:
    """About how many photos a drop interval needs to be no wider than `budget_points` on either side, when the two
    models disagree on a share `rate` of the photos (the paired interval's half-width is about z * sqrt(rate / n)).
    The share is floored at one photo in a hundred: fewer disagreements than that are rarely measured reliably."""
    rate = max(rate, 0.01)
    half = budget_points / 100
    return math.ceil(z * z * rate / (half * half)) if half > 0 else 0
