"""`edgekit bench` and `edgekit report` on a real bundle: latency, drift against the golden set, history, errors,
and the harness in an environment with no torch and no onnx (the slim device install)."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from . import sshboard
from .conftest import SAMPLE, free_port, needs_shared, run_cli


@pytest.fixture()
def history(tmp_path) -> dict:
    return {"EDGEKIT_HISTORY": str(tmp_path / "history.jsonl")}


def test_bench_reports_latency_and_golden_drift_equal_to_build_time(tiny_bundle, tmp_path, history):
    bundle = tiny_bundle
    out = tmp_path / "bench.json"
    r = run_cli("bench", str(bundle), "--runs", "5", "--warmup", "1", "--threads", "1,2", "--json", str(out),
                env=history, check=True)
    rep = json.loads(out.read_text())
    assert set(rep["latency"]) == {"1", "2"}
    for per in rep["latency"].values():
        for p in ("int8", "fp32"):
            s = per[p]
            assert 0 < s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] and s["runs"] == 5
            assert s["first_inference_ms"] > 0 and s["gmac_per_s"] > 0
    assert rep["device"]["runtime"] == "openvino" and rep["device"]["runtime_version"]
    assert rep["peak_rss_mb"] > 0
    g, built = rep["golden"], rep["build_time_golden"]
    assert g["images"] == 32
    for p in ("int8", "fp32"):  # same inputs, same runtime: the same figures as at build time
        assert g["vs_pytorch"][p]["top1_agreement"] == built[p]["top1_agreement"]
        assert np.isclose(g["vs_pytorch"][p]["logit_sqnr_db"], built[p]["logit_sqnr_db"], rtol=0, atol=0.01)
    assert g["vs_pytorch"]["fp32"]["max_abs_logit_diff"] < 1e-3  # the FP32 artifact is PyTorch, in OpenVINO
    assert "int8 speed-up" in r.stdout and "golden set (32 inputs)" in r.stdout
    lines = Path(history["EDGEKIT_HISTORY"]).read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["bundle"]["name"] == bundle.name
    rep2 = run_cli("report", "--runs", env=history, check=True)
    assert bundle.name in rep2.stdout and len(rep2.stdout.splitlines()) == 3  # header + one row per thread
    rep2 = run_cli("report", env=history, check=True)
    assert bundle.name in rep2.stdout and len(rep2.stdout.splitlines()) == 2  # header + one row per device


@needs_shared
def test_bench_on_labelled_images(default_build, tmp_path, history):
    images = tmp_path / "imgs"
    images.mkdir()
    for f in sorted(SAMPLE.iterdir())[:6]:
        shutil.copy(f, images / f.name)
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "bench.json"
    run_cli("bench", str(default_build[0]), "--images", str(images), "--runs", "2", "--threads", "1",
            "--json", str(out), env=history, check=True)
    im = json.loads(out.read_text())["images"]
    assert im["images"] == 6 and im["labelled_images"] == 6 and im["skipped_unreadable"] == ["broken.jpg"]
    assert 0 <= im["top1_int8"] <= 1 and im["preprocess_ms_per_image"] > 0


def test_bench_bad_inputs(tiny_bundle, tmp_path, history):
    r = run_cli("bench", str(tmp_path), env=history)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not an edgekit bundle" in r.stderr
    r = run_cli("bench", str(tiny_bundle), "--threads", "0", env=history)
    assert r.returncode == 2 and "--threads" in r.stderr
    r = run_cli("bench", str(tiny_bundle), "--runtime", "tensorrt", env=history)
    assert r.returncode == 2 and "unknown runtime" in r.stderr
    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_bundle, tampered)
    with open(tampered / "model.int8.bin", "r+b") as f:
        f.seek(100)
        f.write(b"\x00" * 16)
    r = run_cli("bench", str(tampered), env=history)
    assert r.returncode == 2 and "does not match its sha256" in r.stderr
    assert not Path(history["EDGEKIT_HISTORY"]).exists()  # failed runs are not recorded
    r = run_cli("report", env=history)
    assert r.returncode == 2 and "no bench runs" in r.stderr


@pytest.fixture(scope="session")
def slim_env(device_venv) -> Path:
    """The device install as the bundle's model card makes it (conftest.device_venv): its wheel, one runtime."""
    return device_venv.venv


def test_harness_runs_without_torch_or_onnx(slim_env, default_build, tmp_path):
    py = str(slim_env / "bin" / "python")
    missing = subprocess.run([py, "-c", "import importlib.util as u; print([m for m in ('torch', 'onnx', "
                              "'onnxruntime') if u.find_spec(m)])"], capture_output=True, text=True, check=True)
    assert missing.stdout.strip() == "[]"
    out = tmp_path / "bench.json"
    env = {**os.environ, "EDGEKIT_HISTORY": str(tmp_path / "h.jsonl")}
    r = subprocess.run([str(slim_env / "bin" / "edgekit"), "bench", str(default_build[0]), "--runs", "3",
                        "--threads", "1", "--json", str(out)], capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["golden"]["vs_pytorch"]["int8"]["top1_agreement"] == rep["build_time_golden"]["int8"]["top1_agreement"]
    assert np.isfinite(rep["latency"]["1"]["int8"]["p50_ms"])


@pytest.mark.parametrize("args, extra", [
    (["build", "--variant", "lite0", "--num-calib", "10"], "pip install '.[build]'"),
    (["analyze", "--num-calib", "10"], "pip install '.[build]'"),
])
def test_device_install_says_which_extra_a_command_needs(slim_env, tmp_path, args, extra):
    r = subprocess.run([str(slim_env / "bin" / "edgekit"), *args], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "EDGEKIT_CACHE_DIR": str(tmp_path / "c")})
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("edgekit build ")]
    assert r.returncode == 2 and len(lines) == 1 and extra in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_device_install_pulls_and_signs(slim_env, tmp_path):
    """The device extras bring what pull needs (oras, cryptography): a registry that does not answer is one line
    about the registry, not a missing package; keygen works."""
    edgekit = str(slim_env / "bin" / "edgekit")
    r = subprocess.run([edgekit, "pull", "oci://127.0.0.1:9/edgekit/models:lite0-x86-int8", "--to", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "127.0.0.1:9" in lines[0], r.stderr
    assert "extra" not in lines[0] and "Traceback" not in r.stderr
    r = subprocess.run([edgekit, "keygen", str(tmp_path / "key")], capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / "key").is_file(), r.stderr


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1 standing in for a board."""
    board = sshboard.start(tmp_path_factory.mktemp("sshd"))
    yield board
    sshboard.stop(board)


def test_bench_on_a_remote_board_over_ssh(sshd, slim_env, default_build, tmp_path, history):
    """The board runs the slim install (no torch); the report comes back and lands in the local history."""
    out = tmp_path / "remote.json"
    r = run_cli("bench", str(default_build[0]), "--device", sshd["url"], "--ssh-config",
                str(sshd["dir"] / "ssh_config"), "--remote-edgekit", str(slim_env / "bin" / "edgekit"),
                "--remote-dir", str(tmp_path / "board"), "--runs", "3", "--threads", "1", "--json", str(out),
                env=history, check=True)
    rep = json.loads(out.read_text())
    assert rep["remote"] == sshd["url"] and rep["device"]["runtime"] == "openvino"
    assert rep["golden"]["vs_pytorch"]["int8"]["top1_agreement"] == rep["build_time_golden"]["int8"]["top1_agreement"]
    copied = list((tmp_path / "board").glob("lite0-x86-int8-*/manifest.json"))
    assert len(copied) == 1
    assert json.loads(Path(history["EDGEKIT_HISTORY"]).read_text().splitlines()[-1])["remote"] == sshd["url"]
    assert (sshd["dir"] / "board-history.jsonl").is_file()  # the board kept its own record too
    assert "int8 speed-up" in r.stdout


def test_remote_failures_are_clear_and_bounded(sshd, tiny_bundle, tmp_path, history):
    import time

    cfg = ["--ssh-config", str(sshd["dir"] / "ssh_config"), "--remote-dir", str(tmp_path / "board")]
    t = time.perf_counter()
    r = run_cli("bench", str(tiny_bundle), "--device", f"ssh://{sshd['user']}@127.0.0.1:{free_port()}",
                *cfg, env=history)
    assert r.returncode == 2 and "ssh to" in r.stderr and "refused" in r.stderr.lower()
    assert r.stderr.splitlines()[-1].startswith("error:") and r.stderr.count("error:") == 1
    assert time.perf_counter() - t < 30
    r = run_cli("bench", str(tiny_bundle), "--device", sshd["url"], "--ssh-config",
                str(sshd["dir"] / "stranger_config"), "--remote-dir", str(tmp_path / "board"), env=history)
    assert r.returncode == 2 and "permission denied" in r.stderr.lower()
    r = run_cli("bench", str(tiny_bundle), "--device", sshd["url"], *cfg, "--remote-edgekit",
                "/nonexistent/bin/edgekit", env=history)
    assert r.returncode == 2 and "edgekit is not installed on" in r.stderr
    r = run_cli("bench", str(tiny_bundle), "--device", "http://board", env=history)
    assert r.returncode == 2 and "ssh://" in r.stderr
    # a board that stops answering: the server accepts the connection but never speaks
    import signal

    pid = int((sshd["dir"] / "sshd.pid").read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        t = time.perf_counter()
        r = run_cli("bench", str(tiny_bundle), "--device", sshd["url"], *cfg, env=history)
        took = time.perf_counter() - t
    finally:
        os.kill(pid, signal.SIGCONT)
    assert r.returncode == 2 and "ssh to" in r.stderr and took < 60, (took, r.stderr)
    assert not Path(history["EDGEKIT_HISTORY"]).exists()


def test_matrix_builds_missing_bundles_and_writes_table_and_chart(default_build, cache_dir, tmp_path, history):
    out = tmp_path / "dist"
    r = run_cli("bench", "--variant", "lite0", "--target", "x86", "--out", str(out), "--num-calib", "20",
                "--cache-dir", str(cache_dir), "--runs", "3", "--threads", "1", env=history, check=True)
    assert (out / "lite0-x86-int8" / "manifest.json").is_file()  # built (from the cache), then measured
    rows = json.loads((out / "bench" / "matrix-x86.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["lite0"]
    row = rows[0]
    assert row["size_mb"] > 1 and row["int8_p50_ms"] > 0 and row["speedup"] > 0 and row["int8_gmac_per_s"] > 0
    md = (out / "bench" / "matrix-x86.md").read_text()
    assert "| lite0 |" in md and "| lite0 |" in r.stdout
    # the INT8 verdict per variant, from the bench report of this device
    report = json.loads(Path(history["EDGEKIT_HISTORY"]).read_text().splitlines()[-1])
    assert row["verdict"].startswith("INT8 pays off") == report["verdict"]["clearly_faster"]
    assert row["verdict"].startswith(("INT8 pays off", "FP32: INT8 not clearly faster")) and row["verdict"] in md
    from PIL import Image

    # the default recipe's views are unlabelled: no top-1, so the chart shows latency alone (it is always drawn)
    assert Image.open(out / "bench" / "matrix-x86.png").size[0] > 300
    # a bundle in --out calibrated on other images than --calib asks is rebuilt, and the run says why
    small = tmp_path / "small"
    small.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):  # made here: the test needs no ../shared
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(small / f"{i}.png")
    args = ["bench", "--variant", "lite0", "--target", "x86", "--out", str(out), "--cache-dir", str(cache_dir),
            "--runs", "3", "--threads", "1", "--calib", str(small), "--num-calib", "10"]
    r = run_cli(*args, env=history, check=True)
    assert f"rebuilding lite0-x86-int8: it was calibrated on default, not {small}" in r.stderr
    assert json.loads((out / "lite0-x86-int8" / "manifest.json").read_text())["calibration"]["source"] == "folder 'small'"
    r = run_cli(*args, env=history, check=True)
    assert "reusing" in r.stderr and "rebuilding" not in r.stderr
    r = run_cli("bench", "--variant", "lite3", "--target", "x86", "--out", str(out), env=history)
    assert r.returncode == 2 and "skipping lite3: no weights" in r.stderr and "no bundle to measure" in r.stderr
    r = run_cli("bench", str(out / "lite0-x86-int8"), "--variant", "lite0", env=history)
    assert r.returncode == 2 and "not both" in r.stderr


def test_matrix_merges_rows_of_the_same_device_and_draws_latency_without_labels(tmp_path):
    from edgekit.device import matrix

    dev = {"cpu": "cpu A", "runtime": "openvino", "runtime_version": "1"}
    row = {"variant": "lite0", "size_mb": 5.3, "fp32_p50_ms": 5.0, "int8_p50_ms": 2.5, "speedup": 2.0,
           "top1_fp32": None, "top1_int8": None, "agreement": 0.99, "int8_gmac_per_s": 10.0,
           "top1_source": "no labels", "random_weights": False, "threads": 1}
    paths = matrix.write([row, {**row, "variant": "lite1"}], tmp_path, "m", "t", dev)
    assert paths["png"].stat().st_size > 1000  # bars of latency: no top-1 to plot against
    rows, kept = matrix.merged([{**row, "int8_p50_ms": 2.0}], paths["json"], dev)
    assert [r["variant"] for r in rows] == ["lite0", "lite1"] and kept == ["lite1"] and rows[0]["int8_p50_ms"] == 2.0
    rows, kept = matrix.merged([row], paths["json"], {**dev, "cpu": "cpu B"})  # another device: nothing kept
    assert [r["variant"] for r in rows] == ["lite0"] and kept == []


def test_matrix_chart_and_markdown_render(tmp_path):
    from PIL import Image

    from edgekit.device import matrix

    rows = [{"variant": v, "size_mb": s, "fp32_p50_ms": f, "int8_p50_ms": i, "speedup": f / i, "top1_fp32": a,
             "top1_int8": b, "agreement": 0.99, "int8_gmac_per_s": 10.0, "top1_source": "validation (300 images)",
             "random_weights": False, "threads": 1}
            for v, s, f, i, a, b in (("lite0", 5.3, 28.0, 29.0, 0.877, 0.880), ("lite1", 6.0, 41.0, 40.0, 0.88, 0.883))]
    paths = matrix.write(rows, tmp_path, "m", "test")
    assert set(paths) == {"json", "markdown", "png"}
    img = Image.open(paths["png"])
    assert img.format == "PNG" and img.size[0] >= 600
    assert np.asarray(img.convert("L")).std() > 5  # something was drawn
    md = paths["markdown"].read_text()
    assert "| lite0 | 5.30 MB | 28.00 ms | 29.00 ms |" in md and "88.30 %" in md
    assert not list(tmp_path.glob("*.tmp"))
