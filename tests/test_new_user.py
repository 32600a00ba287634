"""What a new user hit (issue 18): figures that say where they come from, warnings for unvalidated bundles, one-line
errors (a corrupt checkpoint, the wrong runtime, Ctrl-C), nothing left behind by a killed build, and progress that
shows in a log."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edgekit.core import bundle as manifest
from edgekit.device.imagesets import directory_samples, load_pixels

from .conftest import REPO, interruptible, run_cli


def _images(root: Path, n: int, junk: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(root / f"img{i:02d}.png")
    for i in range(junk):
        (root / f"junk{i:02d}.jpg").write_bytes(b"not an image")
    return root


def test_default_figures_say_they_are_a_lower_bound(default_build, tmp_path):
    bundle, r = default_build
    m = manifest.read(bundle)
    assert "lower bound" in m["validation"]["caveat"] and "--val DIR" in m["validation"]["caveat"]
    assert "note: these figures were measured on crops of scikit-image's sample pictures" in r.stderr
    assert "**Note:** these figures were measured on crops" in (bundle / "README.md").read_text()
    out = tmp_path / "b.json"
    b = run_cli("bench", str(bundle), "--runs", "2", "--threads", "1", "--json", str(out),
                env={"EDGEKIT_HISTORY": str(tmp_path / "h.jsonl")}, check=True)
    assert "note: the golden set was measured on crops" in b.stdout
    assert json.loads(out.read_text())["caveat"] == m["validation"]["caveat"]
    # edgekit report prints milliseconds as numbers with their unit
    rep = run_cli("report", env={"EDGEKIT_HISTORY": str(tmp_path / "h.jsonl")}, check=True).stdout
    assert re.search(r"\d+\.\d\d ms", rep) and not re.search(r"\d\dm ", rep)


def test_progress_shows_in_a_log(default_build):
    # stderr is a pipe here, as in CI or under nohup: plain lines, and each long step ends with its time
    r = default_build[1]
    assert re.search(r"^  quantize: calibrate \(minmax\) \(20 img\) \.\.\.$", r.stderr, re.M), r.stderr
    assert re.search(r"^  quantize: calibrate \(minmax\): \d+\.\d s$", r.stderr, re.M), r.stderr


def test_a_small_calibration_folder_warns_and_the_manifest_records_it(cache_dir, tmp_path):
    src = _images(tmp_path / "twelve", 12)
    r = run_cli("build", "--calib", str(src), "--out", str(tmp_path / "dist"), "--cache-dir", str(cache_dir),
                "--rounding", "nearest", check=True)
    assert "warning: no validation images: all 12 images of" in r.stderr and "--num-calib" in r.stderr
    m = manifest.read(tmp_path / "dist" / "lite0-x86-int8")
    assert m["validation"]["images"] == 0 and m["warnings"] and "no validation images" in m["warnings"][0]
    assert "golden.npz" not in m["files"]
    b = run_cli("bench", str(tmp_path / "dist" / "lite0-x86-int8"), "--runs", "2", "--threads", "1",
                env={"EDGEKIT_HISTORY": str(tmp_path / "h.jsonl")}, check=True)
    assert "golden set: none in this bundle" in b.stdout and "warning (from the build): no validation images" in b.stdout
    # fewer than 10: refused, in one line, without first warning about validation
    r = run_cli("build", "--calib", str(_images(tmp_path / "six", 6)), "--out", str(tmp_path / "dist6"))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("edgekit build ")]
    assert r.returncode == 2 and lines == [f"error: only 6 calibration image(s) in {tmp_path / 'six'}; at least 10 "
                                           "are needed"], r.stderr


def test_unreadable_images_are_summarised_in_one_warning(tmp_path):
    src = _images(tmp_path / "mixed", 2, junk=20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = load_pixels(directory_samples(src), {"resize": 64, "crop": 56, "interpolation": "bilinear"})
    assert len(got.pixels) == 2 and len(got.skipped) == 20
    texts = [str(w.message) for w in caught]
    assert len(texts) == 1 and texts[0].startswith("skipped 20 unreadable image(s) of 22: junk00.jpg") \
        and "and 17 more" in texts[0]


def test_a_bad_calib_fails_before_the_build_stack_is_imported(tmp_path):
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "onnx", "onnxruntime", "openvino"):
                    raise ImportError(name + " must not be imported to refuse an argument")
        sys.meta_path.insert(0, Block())
        from edgekit.cli import main
        main(["build", "--calib", sys.argv[1]])
    """)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "nowhere")], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: --calib '{tmp_path / 'nowhere'}' is neither a directory nor a recipe (recipes: default; or a recipe "
        "file, FILE.toml)"], r.stderr
    assert time.perf_counter() - t < 10


class NotTensors:
    """An object a checkpoint may hold besides tensors (a whole model, an optimizer...)."""


def test_checkpoint_errors_name_the_cause_and_never_advise_unpickling(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(1)}, "model": NotTensors()}, tmp_path / "pickled.pth")
    (tmp_path / "garbage.pth").write_bytes(os.urandom(512))
    for name, says in (("pickled.pth", "holds pickled Python objects"), ("garbage.pth", "not a PyTorch checkpoint")):
        r = run_cli("build", "--weights", str(tmp_path / name), "--num-calib", "10", "--out", str(tmp_path / "d"),
                    "--cache-dir", str(tmp_path / "c"))
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode == 2 and last.startswith("error: cannot read checkpoint") and says in last, r.stderr
        assert "weights_only" not in r.stderr and "Traceback" not in r.stderr
        if name == "pickled.pth":
            assert "NotTensors" in last  # the unpickler's own words name what is in there


def test_the_wrong_runtime_for_a_bundle_is_one_line(tiny_bundles, tmp_path):
    r = run_cli("bench", str(tiny_bundles["arm64"]), "--runtime", "onnxruntime", "--runs", "2",
                env={"EDGEKIT_HISTORY": str(tmp_path / "h.jsonl")})
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "error: onnxruntime cannot run model.int8.tflite (.tflite models run with litert): use the bundle's own "
        "runtime (--runtime auto, or runtime='auto' in edgekit.load)")
    assert "--runtime" in run_cli("bench", "--help").stdout and "litert" in run_cli("bench", "--help").stdout


def _start_build(tmp_path: Path, cache: Path, out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgekit.cli", "build", "--num-calib", "20", "--out", str(out),
                             "--cache-dir", str(cache)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env={**os.environ, **env}, preexec_fn=interruptible)


def _wait_for(pred, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    p = _start_build(tmp_path, tmp_path / "c", tmp_path / "d", {})
    try:
        assert _wait_for(lambda: (tmp_path / "c" / "export").is_dir(), 60)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in err and "Aborted" not in err


def test_a_killed_build_leaves_nothing_the_next_one_does_not_sweep(tmp_path):
    cache, out, tmp = tmp_path / "c", tmp_path / "d", tmp_path / "tmp"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}

    def in_quantize():
        return any((cache / "quantize").glob(".tmp-*"))

    p = _start_build(tmp_path, cache, out, env)
    try:
        assert _wait_for(in_quantize, 120), "the build never reached its quantize stage"
        # calibration under way: its working files written (waited for, not slept on)
        assert _wait_for(lambda: any((cache / "quantize").glob(".tmp-*/.quant-*/*")), 120), "no calibration files"
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=30)
    finally:
        p.kill()
    assert in_quantize()  # what the killed build left in the cache

    def ours_in_tmp():  # .ses: a 51-byte session id a native runtime writes there on any build, not edgekit's
        return [p for p in tmp.iterdir() if p.name != ".ses"]

    assert not ours_in_tmp()  # nothing in $TMPDIR: its working files live under the stage's entry
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", "build", "--num-calib", "20", "--out", str(out),
                        "--cache-dir", str(cache)], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    left = [p for p in cache.rglob(".*") if p.name.startswith((".tmp-", ".nocache-"))]
    assert left == [] and not ours_in_tmp() and not list(out.glob(".tmp-*"))
    manifest.read(out / "lite0-x86-int8")


def test_a_published_bundle_names_no_path_of_the_build_machine(cache_dir, tmp_path):
    """A bundle travels: it says what its images were (a folder's name, counts, digests), never where they lay. Built
    from a directory with a distinctive name (calibration, validation and output under it), no file of the bundle,
    the wheel's bytes included, contains that name or the build machine's host name."""
    import platform
    import zipfile

    home = tmp_path / "Zq7-home-of-a-build-user"
    calib, val = _images(home / "calib-photos", 12), home / "val-photos"
    val.mkdir()
    rng = np.random.default_rng(1)  # other pictures than the calibration's
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(val / f"v{i}.png")
    r = run_cli("build", "--calib", str(calib), "--val", str(val), "--num-calib", "12", "--out", str(home / "dist"),
                "--cache-dir", str(cache_dir), "--json", check=True)
    m = json.loads(r.stdout)
    bundle = home / "dist" / m["name"]
    assert m["calibration"]["source"] == "folder 'calib-photos'" and m["validation"]["source"] == "folder 'val-photos'"
    host = platform.node()
    for f in bundle.iterdir():
        data = f.read_bytes()
        blobs = [data]
        if f.suffix == ".whl":  # compressed: every member's bytes
            blobs += [zipfile.ZipFile(f).read(n) for n in zipfile.ZipFile(f).namelist()]
        if f.suffix == ".npz":  # compressed: the string arrays (the images' ids)
            blobs += ["\n".join(map(str, a.tolist())).encode() for a in np.load(f).values() if a.dtype.kind in "USO"]
        for blob in blobs:
            assert b"Zq7-home" not in blob and str(tmp_path).encode() not in blob, f.name
        if f.suffix != ".whl" and len(host) >= 6:  # the wheel is edgekit's source: a host named "runner" is in it
            assert all(host.encode() not in blob for blob in blobs), (f.name, host)
