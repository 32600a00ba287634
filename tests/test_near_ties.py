"""The near-tie analysis a failed accuracy budget reports (near_ties): numpy only, no models."""
import numpy as np
import pytest

from edgekit.analysis import near_ties


def test_near_ties_lists_flipped_images_by_how_often_then_by_margin():
    rng = np.random.default_rng(3)
    fp32 = rng.normal(0, 1, (200, 10)).astype(np.float32)
    fp32[np.arange(200), 0] = 5.0
    fp32[:, 1] = 5.0 - np.linspace(0.01, 3.0, 200)  # image i: FP32 top-2 margin grows with i
    a, b = fp32.copy(), fp32.copy()
    a[[0, 5], 1] += 0.2  # run a flips images 0 and 5 (margins 0.01 and 0.085)
    b[[5, 7], 1] += 0.2  # run b flips 5 and 7 (0.115)
    ids = [f"img{i}" for i in range(200)]
    labels = np.full(200, -1)
    labels[[0, 5]] = [0, 3]  # FP32 (top-1: class 0) right on image 0, wrong on 5; image 7 unlabelled
    t = near_ties.analyse(fp32, a, [a, b], ids, allowed=1, labels=labels)
    assert [f["id"] for f in t["flipped"]] == ["img5", "img0", "img7"]
    assert [f["flipped_in_models"] for f in t["flipped"]] == [2, 1, 1]
    assert t["flipped_by_every_model"] == 1 and t["allowed_disagreements"] == 1 and t["models"] == 2
    assert t["flipped"][1]["fp32_margin"] == pytest.approx(0.01, abs=1e-4)
    assert [f.get("fp32_correct") for f in t["flipped"]] == [False, True, None]


def test_near_ties_expected_disagreements_follow_the_noise():
    """Noise proportional to each image's top-1 logit (as INT8's is): the analysis recovers its relative size, and
    its expected count is an estimate of what such models show."""
    rng = np.random.default_rng(4)
    fp32 = rng.normal(0, 1, (2000, 100)) * rng.uniform(1, 4, (2000, 1))
    scale = np.abs(fp32.max(1, keepdims=True))

    def noisy(c):
        return fp32 + rng.normal(0, 1, fp32.shape) * c * scale

    ids = [str(i) for i in range(2000)]
    small, large = noisy(0.01), noisy(0.04)
    ts, tl = (near_ties.analyse(fp32, m, [m], ids) for m in (small, large))
    assert ts["relative_margin_noise"] == pytest.approx(0.01 * np.sqrt(2), rel=0.1)
    assert ts["expected_disagreements"] < tl["expected_disagreements"]
    assert tl["expected_disagreements_at_half_noise"] < tl["expected_disagreements"]
    measured = np.mean([(noisy(0.04).argmax(1) != fp32.argmax(1)).sum() for _ in range(5)])
    assert tl["expected_disagreements"] == pytest.approx(measured, rel=0.25)
