"""The device side on an emulated arm64 Debian 12 (the Raspberry Pi OS base) with only numpy, Pillow and a runtime:
the same bundle gives the same predictions there as on x86, as a Raspberry Pi 4 (Cortex-A72, no dot product) and
as a Pi 5 (Cortex-A76, dot product: XNNPACK's other int8 kernels). The userspace comes from scripts/arm64_env.sh
(.ci/run builds it; about a minute, cached). With ai-edge-litert, the board's packages are what the bundle's model
card installs: its wheel with the device-tflite extra, resolved from the index for aarch64 (scripts/arm64_pip.sh;
the emulated board cannot run pip itself). With tflite-runtime 2.14 (numpy<2, opt/site-tflite214) and onnxruntime
(opt/site), edgekit comes from the bundle's wheel too, never from the checkout."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit import load as edgekit_load
from edgekit.core import bundle as manifest
from edgekit.device import preprocess, runtimes

from .conftest import REPO, run_cli

ROOT = Path(os.environ.get("EDGEKIT_ARM64_ROOT", Path.home() / ".cache" / "edgekit" / "arm64-bookworm"))
# board: (userspace view with its /proc/cpuinfo, the CPU qemu emulates, what the fingerprint must find)
BOARDS = {"pi4": (ROOT, "cortex-a72", "Cortex-A72", False), "pi5": (Path(f"{ROOT}-pi5"), "cortex-a76", "Cortex-A76", True)}
GOLDEN = "6"  # inputs: emulated FP32 inference takes seconds each
SITES = {"ai-edge-litert": "site", "tflite-runtime": "site-tflite214"}
INT8_IMAGES = 16  # validation images run through the INT8 .tflite under emulation (about a second each)
# Logit tolerance between the arm64 and x86 runs, in output steps of the int8 logits. ai-edge-litert runs the same
# XNNPACK kernels on both (a requantization tie may round differently: <= 2 steps). tflite-runtime 2.14's older
# kernels round intermediate layers differently and the differences add up: measured up to 6 steps (0.38) on lite0,
# with identical top-1, and a logit SQNR against x86 of 27 dB (the INT8-vs-FP32 gap itself is ~24 dB).
STEPS = {"ai-edge-litert": 2, "tflite-runtime": 8}
MIN_SQNR_DB = {"ai-edge-litert": 30.0, "tflite-runtime": 24.0}  # the arm64 logits against the x86 ones

# Device-side code only (no torch, no onnx): the INT8 artifact's dequantized logits on the golden inputs.
LOGITS = """
import sys, numpy as np
from pathlib import Path
from edgekit.core import contract
from edgekit.core import bundle as manifest
from edgekit.device import preprocess
from edgekit.device import runtimes
b = Path(sys.argv[1]); m = manifest.read(b)
x = preprocess.to_input(np.load(b / "golden.npz")["pixels"][:int(sys.argv[3])], contract.from_manifest(m, "int8"))
run = runtimes.open_runner(m["target"]["runtime"], b / m["artifacts"]["int8"], threads=1)
np.save(sys.argv[2], np.concatenate([run(x[i:i + 1]) for i in range(len(x))]))
"""


def _emulated(path: list, args: list[str], tmp_path: Path, board: str = "pi4") -> subprocess.CompletedProcess:
    """The board's python with only `path` on its PYTHONPATH."""
    root, cpu = BOARDS[board][:2]
    env = {**os.environ, "QEMU_CPU": cpu, "PYTHONPATH": ":".join(map(str, path)),
           "EDGEKIT_HISTORY": str(tmp_path / "history.jsonl")}
    return subprocess.run(["qemu-aarch64-static", "-L", str(root), str(root / "usr/bin/python3"), *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)


def _need(site: str, board: str = "pi4") -> None:
    root = BOARDS[board][0]
    if not (ROOT / "opt" / f".edgekit-{site}").is_file() or not (root / "proc" / "cpuinfo").is_file() \
            or not shutil.which("qemu-aarch64-static"):
        pytest.skip(f"no emulated arm64 userspace with opt/{site} at {root}: run `sudo bash scripts/test_system.sh` "
                    "once (.ci/run does)")


def _bundle_wheel(bundle: Path, dest: Path) -> Path:
    """edgekit alone from the wheel the bundle carries (pure Python, so the host's pip unpacks it for the board)."""
    m = manifest.read(bundle)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(dest),
                        str(bundle / m["device_install"]["wheel"])], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return dest


@pytest.fixture(scope="module")
def board_site(arm64_bundle, tmp_path_factory) -> Path:
    """The model card's install, for the board: `pip install "./WHEEL[device-tflite]"`, aarch64 wheels from the
    index, into one directory (the board's only PYTHONPATH)."""
    _need("site")
    m = manifest.read(arm64_bundle)
    dest = tmp_path_factory.mktemp("board-site")
    requirement = f"{arm64_bundle / m['device_install']['wheel']}[{m['device_install']['extra']}]"
    assert m["device_install"]["pip"] == f'pip install "./{m["device_install"]["wheel"]}[{m["device_install"]["extra"]}]"'
    r = subprocess.run(["bash", str(REPO / "scripts" / "arm64_pip.sh"), str(dest), requirement],
                       capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 0, r.stderr[-2000:]
    return dest


# each runtime on one board and each board with one runtime (a Pi 5 on a current OS, a Pi 4 on an older image with
# tflite-runtime 2.14): the other two pairs added 80 s to the suite and no path of their own
@pytest.mark.parametrize("package, board", [("ai-edge-litert", "pi5"), ("tflite-runtime", "pi4")])
def test_tflite_bundle_on_emulated_arm64_matches_x86(arm64_bundle, board_site, package, board, tmp_path):
    """The fully-integer .tflite on a Pi-like arm64 (XNNPACK) predicts what it predicts on x86; predict and bench
    run there from the bundle's own wheel and the fingerprint finds the emulated board's CPU."""
    site = SITES[package]
    _need(site, board)
    path = [board_site] if package == "ai-edge-litert" else \
        [ROOT / "opt" / site, _bundle_wheel(arm64_bundle, tmp_path / "wheel")]
    r = _emulated(path, ["-c", LOGITS, str(arm64_bundle), str(tmp_path / "arm.npy"), str(INT8_IMAGES)], tmp_path,
                  board)
    assert r.returncode == 0, r.stderr[-2000:]
    arm = np.load(tmp_path / "arm.npy")
    m = manifest.read(arm64_bundle)
    x = preprocess.to_input(np.load(arm64_bundle / "golden.npz")["pixels"][:INT8_IMAGES], m["input"])
    run = runtimes.open_runner("litert", arm64_bundle / m["artifacts"]["int8"], threads=1)
    x86 = np.concatenate([run(x[i:i + 1]) for i in range(len(x))])
    assert arm.shape == x86.shape == (INT8_IMAGES, 1000)
    assert np.array_equal(arm.argmax(1), x86.argmax(1))
    diff = np.abs(arm - x86)
    sqnr = 10 * np.log10((x86 ** 2).sum() / max((diff ** 2).sum(), 1e-12))
    assert diff.max() <= STEPS[package] * m["output"]["quantization"]["scale"] + 1e-6, (diff.max(), sqnr)
    assert sqnr >= MIN_SQNR_DB[package], (diff.max(), sqnr)

    # predict gives there what it gives here
    example = str(arm64_bundle / m["example_image"])
    r = _emulated(path, ["-m", "edgekit.cli", "predict", str(arm64_bundle), example, "--json", "--top", "1"],
                  tmp_path, board)
    assert r.returncode == 0, r.stderr[-2000:]
    there = json.loads(r.stdout.splitlines()[0])["predictions"][0]
    assert there["index"] == edgekit_load(arm64_bundle).classify(example, top=1)[0].index

    # and the harness runs there: right runtime package, aarch64, the board's CPU, drift against PyTorch
    r = _emulated(path, ["-m", "edgekit.cli", "bench", str(arm64_bundle), "--runs", "1", "--warmup", "0",
                         "--threads", "1", "--golden-limit", "2", "--json", str(tmp_path / "arm.json")], tmp_path,
                  board)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((tmp_path / "arm.json").read_text())
    assert rep["device"]["arch"] == "aarch64" and rep["device"]["runtime_package"] == package
    assert rep["golden"]["images"] == 2 and rep["golden"]["vs_pytorch"]["fp32"]["max_abs_logit_diff"] < 1e-3
    cpu, dot = BOARDS[board][2:]
    assert rep["fingerprint"]["cpu"] == cpu and rep["fingerprint"]["int8_features"]["asimddp"] is dot
    assert rep["fingerprint"]["board"].startswith(f"Raspberry Pi {board[-1]}") and rep["verdict"]["line"]


@pytest.mark.parametrize("board", BOARDS)
def test_predict_on_emulated_boards_gives_the_golden_top1(sample_builds, board_site, board, tmp_path):
    """Photographs behind the golden set of an arm64 bundle calibrated on the sample: on either emulated board,
    predict gives the top-1 the INT8 artifact gives on the recorded golden inputs here."""
    from .conftest import SAMPLE

    bundle = sample_builds["arm64"][0]
    g = np.load(bundle / "golden.npz")
    n = 8  # of the 32: emulated inference takes about half a second each
    paths = [str(SAMPLE / str(i)) for i in g["ids"][:n]]
    r = _emulated([board_site], ["-m", "edgekit.cli", "predict", str(bundle), *paths, "--json", "--top", "1"],
                  tmp_path, board)
    assert r.returncode == 0, r.stderr[-2000:]
    there = [json.loads(line)["predictions"][0]["index"] for line in r.stdout.splitlines()[:n]]
    assert there == edgekit_load(bundle).infer(g["pixels"][:n]).argmax(1).tolist()


@pytest.fixture(scope="module")
def onnx_bundle(tiny_bundles) -> Path:
    """The tiny onnx bundle (tests/tiny.py): what is compared is the runtime's arithmetic on each machine, and the
    emulated board runs it in a fraction of lite0's time."""
    return tiny_bundles["onnx"]


def test_bench_on_emulated_arm64_matches_x86(onnx_bundle, tmp_path):
    _need("site")
    args = ["bench", str(onnx_bundle), "--runs", "1", "--warmup", "0", "--threads", "1", "--golden-limit", GOLDEN]
    path = [ROOT / "opt" / "site", _bundle_wheel(onnx_bundle, tmp_path / "wheel")]
    r = _emulated(path, ["-m", "edgekit.cli", *args, "--json", str(tmp_path / "arm.json")], tmp_path)
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
