import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SAMPLE = SHARED / "data" / "imagenet-sample"
CLASSES_TSV = SHARED / "data" / "imagenet-classes.tsv"

needs_shared = pytest.mark.skipif(not SAMPLE.is_dir(), reason="../shared/data/imagenet-sample is absent")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, seconds: float = 10.0) -> bool:
    """True once something accepts connections on 127.0.0.1:port (a server the test started)."""
    import socket
    import time

    for _ in range(int(seconds / 0.1)):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def run_cli(*args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run `edgekit` as a user would (a separate process, real exit code and streams)."""
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", *args], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, cwd=REPO)
    if check and r.returncode != 0:
        raise AssertionError(f"edgekit {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def default_build(tmp_path_factory, cache_dir):
    """One cold lite0 x86 build on the embedded default calibration set (20 images, for test time)."""
    out = tmp_path_factory.mktemp("dist")
    r = run_cli("build", "--variant", "lite0", "--target", "x86", "--num-calib", "20", "--out", str(out),
                "--cache-dir", str(cache_dir), "--json", check=True)
    return out / "lite0-x86-int8", r


@pytest.fixture(scope="session")
def arm64_bundle(tmp_path_factory, cache_dir) -> Path:
    """lite0 for the arm64 target (fully-integer .tflite), small calibration: for tests of the format and devices."""
    out = tmp_path_factory.mktemp("arm64")
    run_cli("build", "--variant", "lite0", "--target", "rpi4", "--num-calib", "20", "--num-val", "16",
            "--out", str(out), "--cache-dir", str(cache_dir), check=True)
    return out / "lite0-arm64-int8"


@pytest.fixture(scope="session")
def lite0_fp32(default_build, cache_dir) -> Path:
    # the session cache also holds other variants' exports (matrix tests): take lite0's, by its input size
    from edgekit.core.variants import get_variant

    size = get_variant("lite0").input_size

    def dims(value) -> list[int]:
        return [d.dim_value for d in value.type.tensor_type.shape.dim]

    # lite0's input size and ImageNet's 1000 outputs (a model of three classes of the training tests is not it)
    found = [p for p in sorted(cache_dir.glob("export/*/model.fp32.onnx"))
             if (g := onnx.load(str(p), load_external_data=False).graph) and dims(g.input[0])[2] == size
             and dims(g.output[0])[-1] == 1000]
    assert found, "default build left no cached lite0 export"
    return found[0]


@pytest.fixture(scope="session")
def sample_builds(tmp_path_factory, cache_dir) -> dict:
    """lite0 for every target, calibrated on 200 of the sample photos and validated on the other 300:
    {target: (bundle, manifest as `build --json` printed it)}."""
    if not SAMPLE.is_dir():
        pytest.skip("../shared/data/imagenet-sample is absent")
    out = tmp_path_factory.mktemp("sample")
    builds = {}
    for target in ("x86", "onnx", "arm64"):
        r = run_cli("build", "--variant", "lite0", "--target", target, "--calib", str(SAMPLE), "--num-calib", "200",
                    "--out", str(out), "--cache-dir", str(cache_dir), "--json", check=True)
        builds[target] = (out / f"lite0-{target}-int8", json.loads(r.stdout))
    return builds


@pytest.fixture(scope="session")
def device_venv(tmp_path_factory, default_build) -> SimpleNamespace:
    """A fresh venv made by following the bundle's model card literally: its bash block, run in a copy of the
    bundle with HOME in a temporary directory (python3 -m venv ~/edgekit-venv, pip install of the wheel the bundle
    carries with the runtime's extra from the index). .venv (no torch, no onnx), .bundle (the copy), .card (the
    commands' CompletedProcess), .env (their environment)."""
    root = tmp_path_factory.mktemp("board")
    bundle = root / default_build[0].name
    shutil.copytree(default_build[0], bundle)
    card = (bundle / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", card, re.S)  # install, bench, predict; then the video extra
    assert len(blocks) == 2 and "device-video" in blocks[1], card
    (root / "home").mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(root / "home"), "EDGEKIT_HISTORY": str(root / "history.jsonl"),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    r = subprocess.run(["bash", "-e", "-c", blocks[0]], capture_output=True, text=True, cwd=bundle, env=env,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return SimpleNamespace(venv=root / "home" / "edgekit-venv", bundle=bundle, card=r, env=env, card_text=card)
