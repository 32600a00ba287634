"""The benchmark suite's report logic (the suite itself never runs in the unit tests: .ci/run smoke-runs --quick)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import paths  # noqa: E402
import report  # noqa: E402


def _artifact(ours_ms, nncf_ms, ours_agree, nncf_agree, tfl_int8_ms, tfl_fp32_ms, ours_sqnr=25.0, nncf_sqnr=13.0):
    speed = {p.name: {"p50_ms": 10.0, "p90_ms": 11.0, "min_ms": 9.0, "gmac_per_s": 1.0} for p in paths.PATHS}
    speed["OpenVINO INT8 (edgekit)"]["p50_ms"] = ours_ms
    speed[paths.NNCF]["p50_ms"] = nncf_ms
    speed["TFLite INT8 (edgekit)"]["p50_ms"] = tfl_int8_ms
    speed["TFLite FP32 (LiteRT)"]["p50_ms"] = tfl_fp32_ms
    fid = {p.name: {"top1_agreement": 1.0, "top1_drop_points": 0.0, "logit_sqnr_db": 30.0} for p in paths.PATHS}
    fid["OpenVINO INT8 (edgekit)"]["top1_agreement"] = ours_agree
    fid[paths.NNCF]["top1_agreement"] = nncf_agree
    fid["OpenVINO INT8 (edgekit)"]["logit_sqnr_db"] = ours_sqnr
    fid[paths.NNCF]["logit_sqnr_db"] = nncf_sqnr
    return {"variant": "lite0", "gmac": 0.39, "speed": {1: speed}, "fidelity": fid}


def test_checks_follow_the_figures():
    ok = report.checks([_artifact(10.4, 10.0, 0.99, 0.97, 5.0, 10.0)])[0]
    assert ok["x86_ok"] and ok["arm_ok"] and ok["x86_int8_vs_nncf_latency"] == 1.04
    slow = report.checks([_artifact(10.6, 10.0, 0.99, 0.97, 5.6, 10.0)])[0]
    assert not slow["x86_ok"] and not slow["arm_ok"]
    tied = report.checks([_artifact(9.0, 10.0, 0.97, 0.97, 5.0, 10.0)])[0]
    assert tied["x86_ok"]  # agreement tied on a few dozen images: the SQNR decides
    fewer = report.checks([_artifact(9.0, 10.0, 0.95, 0.97, 5.0, 10.0)])[0]
    assert not fewer["x86_ok"]  # faster and higher SQNR, but fewer images agree
    noisier = report.checks([_artifact(9.0, 10.0, 0.99, 0.97, 5.0, 10.0, ours_sqnr=13.0)])[0]
    assert not noisier["x86_ok"]  # more images agree, but no better SQNR


def test_every_path_is_unique_and_the_comparisons_exist():
    names = [p.name for p in paths.PATHS]
    assert len(set(names)) == len(names)
    for needed in ("OpenVINO INT8 (edgekit)", "TFLite INT8 (edgekit)", "TFLite FP32 (LiteRT)", paths.NNCF,
                   paths.EAGER):
        assert needed in names
    assert {p.precision for p in paths.PATHS} == {"fp32", "int8"}
    assert all(p.artifact in ("int8", "fp32") for p in paths.PATHS if p.bundle)
