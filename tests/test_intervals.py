"""95 % intervals on accuracy figures (core/intervals.py): Wilson's for a proportion checked against scipy's, the
paired interval for a drop checked by its coverage on simulated pairs, and where they are recorded and said."""
import numpy as np
import pytest

from edgekit.builder.request import Budget
from edgekit.core import intervals
from edgekit.device import metrics


@pytest.mark.parametrize("k,n", [(297, 300), (300, 300), (0, 40), (117, 240), (1, 3)])
def test_wilson_is_scipys_wilson(k, n):
    from scipy.stats import binomtest

    ref = binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert intervals.wilson(k, n) == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_percent_and_points_are_compact():
    assert intervals.percent(0.99, intervals.wilson(297, 300)) == "99.00 % [97.1, 99.7]"
    assert intervals.points(0.33, [-0.61, 1.52]) == "0.33 points [-0.6, 1.5]"
    assert intervals.percent(0.5, None) == "50.00 %"


def _paired(rng, n, p_both, p_first, p_second):
    """Counts (both right, only the first, only the second, neither) of n simulated pairs."""
    draws = rng.choice(4, size=n, p=[p_both, p_first, p_second, 1 - p_both - p_first - p_second])
    return [int((draws == i).sum()) for i in range(4)]


def test_the_paired_drop_interval_covers_the_true_drop_and_is_narrower_than_unpaired():
    """FP32 right on 90 % of photos, INT8 on 89 %, the two wrong together on most photos (as a quantized model
    and its reference are): the interval holds the true drop in at least 95 % of 2,000 samples of 300 photos (98 %:
    Newcombe's interval is a little conservative where few pairs differ), and it is much narrower than the
    unpaired interval of the same two top-1s."""
    rng = np.random.default_rng(0)
    true = 0.01
    covered, widths, unpaired = 0, [], []
    for _ in range(2000):
        a, b, c, d = _paired(rng, 300, 0.88, 0.02, 0.01)
        lo, hi = intervals.paired_difference(a, b, c, d)
        covered += lo <= true <= hi
        widths.append(hi - lo)
        (l1, u1), (l2, u2) = intervals.wilson(a + b, 300), intervals.wilson(a + c, 300)
        p1, p2 = (a + b) / 300, (a + c) / 300
        unpaired.append(np.hypot(p1 - l1, u2 - p2) + np.hypot(u1 - p1, p2 - l2))  # Newcombe's unpaired (method 10)
    assert 0.93 <= covered / 2000 <= 0.99, covered / 2000  # a little conservative with few discordant pairs
    assert np.mean(widths) < 0.6 * np.mean(unpaired)
    # the same photos the other way round: the interval mirrors
    assert intervals.paired_difference(250, 1, 3, 46) == pytest.approx(
        tuple(-x for x in reversed(intervals.paired_difference(250, 3, 1, 46))))
    assert intervals.paired_difference(250, 0, 0, 50)[0] < 0 < intervals.paired_difference(250, 0, 0, 50)[1]


def test_drift_records_every_figure_with_its_interval():
    rng = np.random.default_rng(1)
    fp32 = rng.normal(size=(300, 10)).astype(np.float32)
    int8 = fp32 + rng.normal(scale=0.3, size=fp32.shape).astype(np.float32)
    labels = fp32.argmax(1).copy()
    labels[:30] = (labels[:30] + 1) % 10  # FP32 wrong on 30 photos
    d = metrics.drift(fp32, int8, labels)
    same = int((fp32.argmax(1) == int8.argmax(1)).sum())
    assert d["top1_agreement_ci95"] == list(intervals.wilson(same, 300))
    assert d["top1_fp32_ci95"] == list(intervals.wilson(270, 300))
    lo, hi = d["top1_drop_points_ci95"]
    assert lo <= d["top1_drop_points"] <= hi and hi - lo < 10


def test_a_budget_finer_than_the_photos_can_measure_is_said_with_how_many_would():
    drift = {"images": 300, "labelled_images": 300, "disagreements": 3, "top1_agreement": 0.99,
             "top1_agreement_ci95": list(intervals.wilson(297, 300)), "top1_drop_points": 0.33,
             "top1_drop_points_ci95": [-0.6, 1.5]}
    (line,) = Budget(max_drop=0.2).unresolved(drift)
    assert "--max-drop 0.2 is finer than 300 labelled validation photos" in line and "about 9604 photos" in line
    (line,) = Budget(min_agreement=0.993).unresolved(drift)
    assert "--min-agreement 99.3 is finer than 300" in line and "about 545 photos" in line
    assert "no number of photos" in Budget(min_agreement=1.0).unresolved(drift)[0]
    assert Budget(max_drop=2.0, min_agreement=0.95).unresolved(drift) == []


def test_per_class_rows_carry_their_intervals_and_show_them():
    from edgekit.cli.render import per_class_lines

    labels = np.array([0] * 20 + [1] * 5)
    fp32 = np.eye(2)[labels] * 5.0
    int8 = fp32.copy()
    int8[:3] = np.eye(2)[1] * 5.0  # three of class 0's twenty photos flip
    rows = metrics.per_class(fp32, int8, labels, ["cat", "dog"])["per_class"]
    cat, dog = rows
    assert (cat["top1_fp32"], cat["top1_int8"]) == (1.0, 17 / 20)
    assert cat["top1_int8_ci95"] == pytest.approx(list(intervals.wilson(17, 20)))
    assert dog["top1_fp32_ci95"] == pytest.approx(list(intervals.wilson(5, 5)))
    lo, hi = intervals.wilson(17, 20)
    text = "\n".join(per_class_lines(rows))
    assert f"85.0% [{100 * lo:4.0f}, {100 * hi:3.0f}]" in text and "INT8 [95 % interval]" in text


def test_the_verdict_report_fleet_and_build_matrix_tables_carry_the_agreement_interval():
    from edgekit.cli.render import compare_table, fleet_table, matrix_summary
    from edgekit.device import compare, fleet, verdict

    im = {"images": 300, **metrics.drift(np.eye(3)[np.arange(300) % 3], np.eye(3)[(np.arange(300) % 3)])}
    im["top1_agreement"], im["top1_agreement_ci95"] = 297 / 300, list(intervals.wilson(297, 300))
    report = {"latency": {"1": {"int8": {"p50_ms": 2.0}, "fp32": {"p50_ms": 4.0}}}, "images": im,
              "bundle": {"name": "b"}, "device": {"runtime": "onnxruntime", "cpu": "x"}, "time": "2026-12-08T00:00"}
    v = verdict.verdict(report)
    assert "99.00 % [97.1, 99.7] top-1 agreement with FP32 (300 images)" in v["line"]
    row = compare.summary(report)
    assert row["agreement_ci95"] == im["top1_agreement_ci95"]
    assert "99.00% [97.1, 99.7]" in compare_table([{**row, "runs": 1}])
    board = {**row, "ok": True, "board": "pi", "model": "Pi 5", "int8_features": [], "verdict": v["line"],
             "int8_pays_off": True}
    table = fleet.Table("t", [board])
    assert "99.00% [97.1, 99.7]" in fleet_table(table) and "99.00% [97.1, 99.7]" in table.markdown()
    built = {"bundle": "b", "ok": True, "agreement": 0.99, "agreement_ci95": [0.971, 0.997], "drop_points": 0.33,
             "drop_points_ci95": [-0.6, 1.5], "int8_mb": 5.0, "seconds": 30.0, "cached": "none", "where": "here"}
    assert "99.00% [97.1, 99.7]" in matrix_summary([built], 30.0) and "0.33 [-0.6, 1.5]" in matrix_summary([built], 30.0)
