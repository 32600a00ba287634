"""End-to-end builds through the CLI: bundle contents, OpenVINO int8 check, cache behaviour, bad inputs."""
import json

import pytest

from PIL import Image

from edgekit.builder.onnx.export import TOLERANCE
from edgekit.builder.wheel import wheel_name
from edgekit.core import bundle as manifest

from .conftest import run_cli


def test_bundle_is_complete_and_verified(default_build):
    bundle, r = default_build
    m = manifest.read(bundle)  # verifies every sha256
    assert json.loads(r.stdout)["name"] == "lite0-x86-int8"
    assert set(m["files"]) == {"model.int8.xml", "model.int8.bin", "model.fp32.xml", "model.fp32.bin", "labels.txt",
                               "golden.npz", "README.md", "example.png", wheel_name()}
    assert m["golden"]["images"] == 32 and len(m["class_wnids"]) == 1000
    assert m["artifacts"] == {"int8": "model.int8.xml", "fp32": "model.fp32.xml"}
    assert m["input"]["layout"] == "NCHW" and m["input"]["shape"] == [1, 3, 224, 224]
    assert len(m["class_names"]) == 1000 and m["class_names"][281] == "tabby"
    assert (bundle / "labels.txt").read_text().splitlines()[0] == "tench"
    assert m["weights"]["pretrained"] and "warning" not in m["weights"]
    for key in ("torch", "onnx", "onnxruntime", "openvino"):
        assert m["tools"][key]
    assert m["calibration"]["digest"] and m["calibration"]["images_used"] == 20
    assert set(m["timings"]) >= {"export", "quantize", "target:x86", "validate"}
    assert m["validation"]["images"] > 0 and 0 <= m["validation"]["top1_agreement"] <= 1


def test_export_is_clean_and_matches_pytorch(default_build):
    m = manifest.read(default_build[0])
    g = m["export"]["graph"]
    assert g["opset"] >= 17 and g["nodes"] == 95  # 94 + the Flatten after the keepdim mean
    assert not {"Slice", "Concat", "Cast", "Reshape", "Transpose"} & set(g["op_counts"])
    assert g["op_counts"].get("Pad", 0) == 1  # the stem's mean-pixel padding, by design
    assert "BatchNormalization" not in g["op_counts"]
    assert m["export"]["parity"]["max_abs_diff"] <= TOLERANCE


def test_openvino_graph_runs_int8(default_build):
    from edgekit.device.runtimes import openvino_conv_precisions

    precisions = openvino_conv_precisions(default_build[0] / "model.int8.xml")
    assert set(precisions) <= {"u8", "i8"} and sum(precisions.values()) == 49
    fp32 = openvino_conv_precisions(default_build[0] / "model.fp32.xml")
    assert not set(fp32) & {"u8", "i8"}


def test_identical_rebuild_hits_cache_and_method_change_reuses_export(tmp_path):
    """The cache on the tiny variant (tests/tiny.py), through the command line: an identical rebuild is all hits,
    another --method reuses the export and redoes what depends on the method."""
    from tests import tiny

    ckpt = tiny.checkpoint(tmp_path / "tiny.pt")
    args = ["build", "--weights", str(ckpt), "--target", "x86", "--num-calib", "20", "--out", str(tmp_path),
            "--cache-dir", str(tmp_path / "cache"), "--json"]
    assert tiny.cli(*args).returncode == 0
    r = tiny.cli(*args)
    m = json.loads(r.stdout)
    assert all(s["cached"] for s in m["timings"].values() if isinstance(s, dict))
    m2 = json.loads(tiny.cli(*args, "--method", "entropy").stdout)
    t = m2["timings"]
    assert t["export"]["cached"] and not t["quantize"]["cached"] and not t["target:x86"]["cached"]
    assert m2["calibration"]["method"] == "entropy"


def test_corrupt_cache_entry_is_rebuilt(tmp_path):
    """A cached file that no longer matches its entry's digest: the entry is rebuilt, with a warning."""
    from tests import tiny

    ckpt, cache = tiny.checkpoint(tmp_path / "tiny.pt"), tmp_path / "cache"
    args = ["build", "--weights", str(ckpt), "--num-calib", "20", "--out", str(tmp_path / "d"), "--cache-dir",
            str(cache), "--json"]
    assert tiny.cli(*args).returncode == 0
    for victim in (cache / "quantize").glob("*/model.int8.onnx"):
        victim.write_bytes(victim.read_bytes()[:1000])
    r = tiny.cli(*args, "--force")
    m = json.loads(r.stdout)
    assert "corrupt cache entry" in r.stderr
    assert m["timings"]["export"]["cached"] and not m["timings"]["quantize"]["cached"]
    manifest.read(tmp_path / "d" / m["name"])


def _one_error_line(r):
    assert r.returncode != 0
    lines = [line for line in r.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_unknown_target_and_variant_list_valid_ones(tmp_path):
    line = _one_error_line(run_cli("build", "--target", "gpu9", "--out", str(tmp_path)))
    assert "unknown target 'gpu9'" in line and "x86" in line and "onnx" in line
    line = _one_error_line(run_cli("build", "--variant", "lite7", "--out", str(tmp_path)))
    assert "lite0, lite1, lite2, lite3, lite4" in line
    assert not any(tmp_path.iterdir())


def test_directory_of_corrupt_images_is_refused(tmp_path, cache_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(12):
        (bad / f"img{i}.jpg").write_bytes(b"\xff\xd8\xff garbage")
    Image.new("RGB", (300, 300), (200, 10, 10)).save(bad / "one_good.png")
    r = run_cli("build", "--calib", str(bad), "--num-calib", "13", "--out", str(tmp_path / "d"),
                "--cache-dir", str(cache_dir))
    line = _one_error_line(r)
    assert "only 1 usable calibration image" in line and "12 unreadable" in line
    assert not (tmp_path / "d" / "lite0-x86-int8").exists()
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "d").glob("*"))


def test_unwritable_output_directory(tmp_path, default_build, cache_dir):
    blocker = tmp_path / "file"
    blocker.write_text("I am a file, not a directory")
    r = run_cli("build", "--num-calib", "20", "--out", str(blocker / "dist"), "--cache-dir", str(cache_dir))
    assert "cannot write to output directory" in _one_error_line(r)


def test_missing_calibration_dir(tmp_path):
    line = _one_error_line(run_cli("build", "--calib", str(tmp_path / "nope"), "--out", str(tmp_path)))
    assert "neither a directory nor a recipe" in line


def test_random_weights_are_said_in_plain_words(tmp_path):
    """A variant with no weights here (lite3 and lite4 have no package; the tiny variant of the tests neither):
    refused without --random-weights, and said in plain words wherever the bundle speaks with it."""
    from tests import tiny

    common = ["build", "--variant", "tiny", "--target", "onnx", "--num-calib", "10", "--num-val", "8", "--out",
              str(tmp_path), "--cache-dir", str(tmp_path / "cache"), "--json"]
    r = tiny.cli(*common)
    assert "--random-weights" in _one_error_line(r)
    r = tiny.cli(*common, "--random-weights")
    assert r.returncode == 0, r.stderr
    m = manifest.read(tmp_path / "tiny-onnx-int8")
    assert not m["weights"]["pretrained"] and "RANDOM WEIGHTS" in m["weights"]["warning"]
    assert set(m["files"]) == {"model.int8.onnx", "model.fp32.onnx", "labels.txt", "golden.npz", "README.md",
                               "example.png", wheel_name()}
    assert "RANDOM WEIGHTS" in (tmp_path / "tiny-onnx-int8" / "README.md").read_text()
    assert "RANDOM WEIGHTS" in r.stderr


def test_bundle_wheel_is_edgekit_deterministic_and_complete(default_build, tmp_path):
    """The wheel a bundle carries: every file git tracks under edgekit/ that the package ships, the metadata of
    pyproject.toml (extras included), the console script, a RECORD that pip checks; the same bytes when another
    process builds it again."""
    import subprocess
    import sys
    import tomllib
    import zipfile

    from .conftest import REPO

    bundle = default_build[0]
    m = manifest.read(bundle)
    assert m["device_install"]["wheel"] == wheel_name() and m["device_install"]["extra"] == "device-openvino"
    assert m["device_install"]["pip"] in (bundle / "README.md").read_text()
    subprocess.run([sys.executable, "-c", f"from edgekit.builder.wheel import build_wheel; "
                    f"build_wheel({str(tmp_path)!r})"], check=True, cwd=tmp_path)
    assert (tmp_path / wheel_name()).read_bytes() == (bundle / wheel_name()).read_bytes()
    tracked = subprocess.run(["git", "ls-files", "edgekit", "targets", "calibration"], capture_output=True, text=True,
                             cwd=REPO)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout: no independent list of the package's files")
    # the package's code, and the data folders inside it as edgekit/targets, edgekit/calibration
    shipped = {f if f.startswith("edgekit/") else f"edgekit/{f}" for f in tracked.stdout.split()
               if f.endswith((".py", ".toml")) or f.startswith("calibration/")}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    with zipfile.ZipFile(bundle / wheel_name()) as z:
        names = set(z.namelist())
        info = wheel_name().split("-py3")[0] + ".dist-info"
        assert {n for n in names if not n.startswith(info)} == shipped
        meta = z.read(f"{info}/METADATA").decode()
        for extra, reqs in project["optional-dependencies"].items():
            assert f"Provides-Extra: {extra}" in meta
            assert all(f'Requires-Dist: {r}; extra == "{extra}"' in meta for r in reqs), extra
        assert "edgekit = edgekit.cli:main" in z.read(f"{info}/entry_points.txt").decode()
        assert len(z.read(f"{info}/RECORD").decode().splitlines()) == len(names)
