import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SAMPLE = SHARED / "data" / "imagenet-sample"
CLASSES_TSV = SHARED / "data" / "imagenet-classes.tsv"

needs_shared = pytest.mark.skipif(not SAMPLE.is_dir(), reason="../shared/data/imagenet-sample is absent")

# The tiers, applied here and nowhere else (markers registered in pyproject.toml). A test gets a marker from the
# fixtures it uses (FIXTURE_MARKS, followed through the fixtures they use) or from its own name (TEST_MARKS: tests that
# build, train or start a service themselves); every one of them also gets `slow`. The fast tier is
# `pytest -m "not slow"`: everything else, on tiny synthetic bundles and in-process command lines.
FIXTURE_MARKS = {
    "default_build": "build", "arm64_bundle": "build", "sample_builds": "build", "lite0_fp32": "build",
    "onnx_bundle": "build", "bundles": "build", "trained": "train", "device_venv": "venv", "slim_env": "venv",
    "registry": "registry", "sshd": "board", "two_boards": "board", "board_site": "board", "cluster": "ray",
    "serial_small": "build",
}
TEST_MARKS = {  # test function name -> markers
    "test_registry_credentials_from_env_or_docker_config_never_printed": ("registry",),
    **dict.fromkeys([  # each builds a real variant itself
        "test_failed_pair_fails_alone_in_processes_and_in_order",
        "test_budget_that_cannot_hold_searches_then_fails_saying_which_layers",
        "test_arm64_budget_raises_activations_to_int16_then_fails_naming_them",
        "test_budget_met_by_the_default_is_recorded_with_its_near_ties",
        "test_build_int8_aware_ships_the_tuned_int8_beside_the_original_fp32",
        "test_the_budget_tries_int8_aware_before_raising_layers",
        "test_a_killed_build_leaves_nothing_the_next_one_does_not_sweep",
        "test_a_published_bundle_names_no_path_of_the_build_machine",
        "test_a_build_records_the_recipe_by_name_and_digest",
        "test_a_small_calibration_folder_warns_and_the_manifest_records_it",
        "test_a_changed_variant_fact_rebuilds_the_stages_that_read_it", "test_ctrl_c_is_one_line_and_exit_130",
        "test_directory_of_corrupt_images_is_refused",  # lite0 is exported before the images are read
    ], ("build",)),
    **dict.fromkeys([  # each trains a real variant itself
        "test_bad_training_data_is_one_line_and_writes_nothing",
        "test_the_same_seed_gives_the_same_checkpoint_and_nothing_is_left_on_ctrl_c",
        "test_unreadable_training_images_are_one_warning_and_training_goes_on",
        "test_ctrl_c_in_edgekit_train_is_exit_130_and_writes_nothing",
        "test_a_checkpoint_of_train_int8_aware_builds_int8_aware_unless_told_not_to",
    ], ("train",)),
    "test_the_data_folders_are_at_the_top_and_every_wheel_carries_them": ("venv",),  # builds wheels
}
TIER_MARKS = ("build", "train", "venv", "board", "registry", "ray")


def pytest_configure(config):
    """No test reads or writes the user's stage cache or bench history: both point into a directory of the run's
    own (a test that wants another one passes --cache-dir or sets the variable itself)."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="edgekit-tests-"))
    config._edgekit_home = root
    os.environ["EDGEKIT_CACHE_DIR"] = str(root / "cache")
    os.environ["EDGEKIT_HISTORY"] = str(root / "history.jsonl")
    (root / "work").mkdir()
    os.environ["EDGEKIT_TEST_WORKDIR"] = str(root / "work")


def pytest_unconfigure(config):
    root = getattr(config, "_edgekit_home", None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    for item in items:
        marks = {FIXTURE_MARKS[f] for f in item.fixturenames if f in FIXTURE_MARKS}
        marks.update(TEST_MARKS.get(item.originalname, ()))
        for m in sorted(marks):
            item.add_marker(m)
        if marks or any(item.get_closest_marker(m) for m in TIER_MARKS):
            item.add_marker("slow")


def interruptible() -> None:
    """preexec_fn for a child a test sends Ctrl-C: SIGINT back to its default. A suite started in the background
    (`cmd &`, nohup) ignores SIGINT, children inherit that, and Python then never raises KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


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


def run_cli(*args: str, env: dict | None = None, check: bool = False, cwd: Path | None = None) \
        -> subprocess.CompletedProcess:
    """Run `edgekit` as a user would (a separate process, real exit code and streams), in the run's own working
    directory unless told (a default --out dist lands there, never in the checkout)."""
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", *args], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, cwd=cwd or os.environ["EDGEKIT_TEST_WORKDIR"])
    if check and r.returncode != 0:
        raise AssertionError(f"edgekit {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """The x86 bundle of tests/tiny.py (3 classes, 48-pixel input, seeded random weights), built in this process in
    seconds: for tests that need a bundle, not a real variant's figures."""
    from tests import tiny

    root = tmp_path_factory.mktemp("tiny")
    return tiny.build("x86", root / "dist", root / "cache")


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory, tiny_bundle) -> dict[str, Path]:
    """The tiny bundle for every target: {target: bundle}."""
    from tests import tiny

    root = tiny_bundle.parent.parent
    return {"x86": tiny_bundle, **{t: tiny.build(t, root / "dist", root / "cache") for t in ("onnx", "arm64")}}


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
def lite0_fp32(default_build, cache_dir, tmp_path_factory) -> Path:
    """The FP32 ONNX export of default_build: the onnx target of the same build (it shares the export and the
    quantization in the cache: seconds) carries it as its FP32 twin."""
    out = tmp_path_factory.mktemp("onnx")
    run_cli("build", "--variant", "lite0", "--target", "onnx", "--num-calib", "20", "--out", str(out),
            "--cache-dir", str(cache_dir), check=True)
    return out / "lite0-onnx-int8" / "model.fp32.onnx"


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
