"""INT8 fidelity on real labelled images (../shared/data/imagenet-sample): 200 calibrate, the rest validate."""
import json

import pytest

from edgekit import manifest

from .conftest import SAMPLE, needs_shared, run_cli


@needs_shared
@pytest.mark.parametrize("target", ["x86", "onnx"])
def test_lite0_int8_agreement_on_imagenet_sample(target, tmp_path, cache_dir):
    r = run_cli("build", "--variant", "lite0", "--target", target, "--calib", str(SAMPLE), "--num-calib", "200",
                "--out", str(tmp_path), "--cache-dir", str(cache_dir), "--json", check=True)
    m = json.loads(r.stdout)
    v = m["validation"]
    assert v["images"] == 300 and v["labelled_images"] == 300
    # Measured 97.3 % on an AVX2 (non-VNNI) EPYC, where dense layers need 7-bit weights to avoid int16
    # saturation; the 98.5 % goal is not met yet (see README, "Measured").
    assert v["top1_agreement"] >= 0.97, v
    assert v["top1_drop_points"] <= 1.0, v
    assert v["logit_sqnr_db"] >= 18.0, v
    manifest.read(tmp_path / f"lite0-{target}-int8")
