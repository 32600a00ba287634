"""The device harness on an emulated arm64 Debian 12 (the Raspberry Pi OS base) with only numpy, Pillow and a runtime:
the same bundle gives the same drift figures there as on x86. The userspace comes from scripts/arm64_env.sh
(.ci/run builds it; about a minute, cached)."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO, run_cli

ROOT = Path(os.environ.get("EDGEKIT_ARM64_ROOT", Path.home() / ".cache" / "edgekit" / "arm64-bookworm"))
GOLDEN = "6"  # inputs: emulated FP32 inference takes seconds each


@pytest.fixture(scope="module")
def onnx_bundle(default_build, cache_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx")  # same export and quantization as the default build: cached
    run_cli("build", "--variant", "lite0", "--target", "onnx", "--num-calib", "20", "--out", str(out),
            "--cache-dir", str(cache_dir), check=True)
    return out / "lite0-onnx-int8"


def test_bench_on_emulated_arm64_matches_x86(onnx_bundle, tmp_path):
    if not (ROOT / ".edgekit-ready").is_file() or not shutil.which("qemu-aarch64-static"):
        pytest.skip(f"no emulated arm64 userspace at {ROOT}: run scripts/arm64_env.sh (.ci/run does)")
    args = ["bench", str(onnx_bundle), "--runs", "1", "--warmup", "0", "--threads", "1", "--golden-limit", GOLDEN]
    env = {**os.environ, "QEMU_CPU": "cortex-a72", "PYTHONPATH": f"{ROOT / 'opt' / 'site'}:{REPO}",
           "EDGEKIT_HISTORY": str(tmp_path / "arm.jsonl")}
    r = subprocess.run(["qemu-aarch64-static", "-L", str(ROOT), str(ROOT / "usr/bin/python3"), "-m", "edgekit.cli",
                        *args, "--json", str(tmp_path / "arm.json")], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    arm = json.loads((tmp_path / "arm.json").read_text())
    run_cli(*args, "--json", str(tmp_path / "x86.json"), env={"EDGEKIT_HISTORY": str(tmp_path / "x86.jsonl")},
            check=True)
    x86 = json.loads((tmp_path / "x86.json").read_text())
    assert arm["device"]["arch"] == "aarch64" and x86["device"]["arch"] == "x86_64"
    for p in ("int8", "fp32"):
        a, b = arm["golden"]["vs_pytorch"][p], x86["golden"]["vs_pytorch"][p]
        assert a["top1_agreement"] == b["top1_agreement"]
        # the arm64 kernels round differently from the x86 ones: close, not bit-identical
        assert abs(a["logit_sqnr_db"] - b["logit_sqnr_db"]) < (0.5 if p == "int8" else 20)
    assert arm["golden"]["vs_pytorch"]["fp32"]["max_abs_logit_diff"] < 1e-3
