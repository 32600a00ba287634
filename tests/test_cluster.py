"""Build matrices: every pair of --variant x --target, here, in --jobs processes and on a real two-node Ray cluster
(in a network namespace with only loopback: tests/raycluster.py)."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from edgekit.cluster.matrix import expected_wall_s
from edgekit.cluster.pair import pairs
from edgekit.core.variants import UnknownVariant
from edgekit.errors import UnknownTarget
from tests import raycluster
from tests.conftest import run_cli

SMALL = ["--num-calib", "16", "--num-val", "32"]  # the matrix tests' calibration: enough to quantize, quick
TASK_TITLE = "ray::edgekit build "  # a worker's process title while it runs a task: "ray::" and the task's name
VOLATILE = {"manifest.json", "README.md"}  # they record when and how long; everything else is the build's output


def test_pairs_cover_lists_and_all_in_order():
    assert [(p.variant, p.target) for p in pairs("lite0,lite2", "x86,arm64")] == \
        [("lite0", "x86"), ("lite0", "arm64"), ("lite2", "x86"), ("lite2", "arm64")]
    assert len(pairs("all", "all")) == 15 and pairs("lite1", "rpi4")[0].name == "lite1-arm64-int8"
    assert len(pairs("lite0,lite0", "x86")) == 1  # named twice, built once
    with pytest.raises(UnknownVariant, match="lite9"):
        pairs("lite0,lite9", "x86")
    with pytest.raises(UnknownTarget, match="choose one of"):
        pairs("lite0", "x86,gpu")


def test_expected_wall_time_packs_longest_first():
    assert expected_wall_s([60, 50, 40, 30], 1) == 180
    assert expected_wall_s([60, 50, 40, 30], 2) == 90  # 60+30 | 50+40
    assert expected_wall_s([60, 50, 40, 30], 8) == 60  # never below the longest pair


def _bundles(out: Path) -> dict[str, dict[str, bytes]]:
    """Every bundle in `out`: its files' bytes, but for the two that record times."""
    return {d.name: {f.name: f.read_bytes() for f in d.iterdir() if f.name not in VOLATILE}
            for d in sorted(out.iterdir())}


def test_failed_pair_fails_alone_in_processes_and_in_order(tmp_path, cache_dir):
    """lite3 has no packaged weights: its pair fails with that line, lite0's is built, in both local modes."""
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        r = run_cli("build", "--variant", "lite3,lite0", "--target", "x86", "--num-calib", "20", "--out", str(out),
                    "--cache-dir", str(cache_dir), "--jobs", jobs, "--json")
        assert r.returncode == 2, r.stderr
        rows = {row["bundle"]: row for row in json.loads(r.stdout)}
        assert rows["lite0-x86-int8"]["ok"] and not rows["lite3-x86-int8"]["ok"]
        assert "weights" in rows["lite3-x86-int8"]["error"]
        assert rows["lite0-x86-int8"]["manifest"]["name"] == "lite0-x86-int8"
        assert [p.name for p in out.iterdir()] == ["lite0-x86-int8"]  # nothing of lite3, no temporaries
        summary = r.stderr[r.stderr.index("bundle "):]
        assert "lite3-x86-int8" in summary and "FAILED" in summary and "1 of 2 pairs built" in summary
        assert r.stderr.strip().splitlines()[-1].startswith("error: 1 of 2 pairs failed: lite3-x86-int8: ")


@pytest.fixture(scope="module")
def serial_small(tmp_path_factory):
    """lite0 for x86 and onnx on the small calibration, built one pair after the other into a cache of its own:
    the bytes the concurrent and the Ray builds must give (.out: the bundles, .cache: the cache)."""
    from types import SimpleNamespace

    root = tmp_path_factory.mktemp("serial")
    run_cli("build", "--variant", "lite0", "--target", "x86,onnx", *SMALL, "--out", str(root / "out"), "--cache-dir",
            str(root / "cache"), "--jobs", "1", check=True)
    return SimpleNamespace(out=root / "out", cache=root / "cache")


def test_jobs_share_one_cache_without_a_race(serial_small, tmp_path):
    """x86 and onnx of one variant need the same export and the same quantization: two processes make them at once
    into one cache (onnxruntime's quantizer once wrote and deleted a file beside the cached export, and two builds
    deleted each other's). One entry wins, the other build takes it, both bundles are the serial build's byte for
    byte, no finished entry holds a file it did not list, and none was written into at all (its directory's mtime:
    the old quantizer changed it on every run, whether or not the two builds collided)."""
    import shutil

    serial = _bundles(serial_small.out)
    cache = tmp_path / "cache"
    shutil.copytree(serial_small.cache / "export", cache / "export")  # in hand: both builds meet in quantize
    untouched = {d: d.stat().st_mtime_ns for d in (cache / "export").iterdir()}
    r = run_cli("build", "--variant", "lite0", "--target", "x86,onnx", *SMALL, "--out", str(tmp_path / "out"),
                "--cache-dir", str(cache), "--jobs", "2", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert all(row["ok"] for row in json.loads(r.stdout))
    assert _bundles(tmp_path / "out") == serial
    # nothing was created or deleted in a finished entry, whatever the timing (the old quantizer always did)
    assert {d: d.stat().st_mtime_ns for d in (cache / "export").iterdir()} == untouched
    assert len(list((cache / "quantize").iterdir())) == 1
    assert not [p for p in cache.rglob(".*") if p.name.startswith((".tmp-", ".old-"))]
    for entry in cache.glob("*/*/entry.json"):
        listed = set(json.loads(entry.read_text())["files"]) | {"entry.json"}
        assert {p.name for p in entry.parent.iterdir()} == listed, entry.parent


def test_sweep_leaves_other_machines_temporaries_alone(tmp_path):
    """A cache on a shared mount: a process id says nothing about another machine's temporaries."""
    from edgekit.core import bundle as manifest

    dead = 2**22 + 12345  # above pid_max's default: no process has it
    mine, theirs, legacy = (tmp_path / f".tmp-{dead}-h{manifest._host()}-a", tmp_path / f".tmp-{dead}-h0badc0de-b",
                            tmp_path / f".tmp-{dead}-c")
    for p in (mine, theirs, legacy):
        p.mkdir()
    assert manifest.sweep(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == [theirs.name]
    assert manifest.temp_prefix().startswith(f".tmp-{os.getpid()}-h{manifest._host()}-")


def test_matrix_refuses_bad_options_before_any_build(tmp_path):
    for args, says in ((["--variant", "lite0,lite1", "--weights", str(tmp_path / "w.pth")], "--weights names one"),
                       (["--variant", "lite0,lite1", "--target", "x86,arm64", "--method", "entropy"], "entropy"),
                       (["--variant", "lite0,lite1", "--calib", str(tmp_path / "none")], "neither a directory"),
                       (["--variant", "lite0,lite1", "--ray", "127.0.0.1:1"], "no Ray head answers at 127.0.0.1:1"),
                       (["--variant", "lite0,lite1", "--ray", "nowhere"], "expected HEAD:PORT"),
                       (["--variant", "lite0,lite1", "--ray", "http://127.0.0.1:1"], "expected HEAD:PORT"),
                       (["--variant", "lite0,lite1", "--ray", "127.0.0.1:99999"], "expected HEAD:PORT"),
                       (["--variant", "lite0,lite1", "--ray", "--jobs", "2"], "choose one")):
        r = run_cli("build", *args, "--out", str(tmp_path / "out"))
        assert r.returncode == 2 and says in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.fixture(scope="module")
def cluster():
    why = raycluster.missing()
    if why:
        pytest.skip(why)
    c = raycluster.start()
    try:
        yield c
    finally:
        c.stop()


def _kill_first_task(c: raycluster.Cluster, proc: subprocess.Popen, after_s: float = 4.0) -> int:
    """SIGKILL the first Ray worker seen running a build, `after_s` into its task; its host pid."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        pids = c.processes(TASK_TITLE)
        if pids:
            time.sleep(after_s)
            if pids[0] in c.processes(TASK_TITLE):
                os.kill(pids[0], signal.SIGKILL)
                return pids[0]
        time.sleep(0.2)
    raise AssertionError(f"no Ray worker ran a build task; Ray processes: {c.titles('ray::')}")


def test_ray_matrix_is_byte_identical_to_local_and_survives_a_killed_worker(cluster, serial_small, tmp_path):
    local = serial_small.out
    out = tmp_path / "ray"
    # no --cache-dir: each node builds with its own cache (EDGEKIT_CACHE_DIR of its `ray start`), none of ours
    p = cluster.edgekit("build", "--variant", "lite0", "--target", "x86,onnx", *SMALL, "--out", str(out),
                        "--ray", cluster.address, "--retries", "1", "--json",
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        killed = _kill_first_task(cluster, p)
        stdout, stderr = p.communicate(timeout=600)
    finally:
        p.kill()
    assert killed and p.returncode == 0, stderr
    rows = json.loads(stdout)
    assert [r["bundle"] for r in rows] == ["lite0-x86-int8", "lite0-onnx-int8"]  # one pair a node
    assert all(r["ok"] and r["where"].startswith("127.0.0.1") for r in rows)
    assert "2 node(s)" in stderr and "2 of 2 pairs built" in stderr
    there, here = _bundles(out), _bundles(local)
    assert sorted(there) == sorted(here)
    differ = [f"{b}/{f}" for b in here for f in here[b] if there[b].get(f) != here[b][f]]
    assert not differ and all(sorted(there[b]) == sorted(here[b]) for b in here), differ  # the same bytes
    for name in ("cache-head", "cache-node2"):  # both nodes built, each into its own cache
        assert any((cluster.root / name).glob("quantize/*")), name


def test_ray_pair_whose_worker_dies_fails_alone(cluster, tmp_path):
    out = tmp_path / "ray"
    p = cluster.edgekit("build", "--variant", "lite0", "--target", "x86,onnx", *SMALL, "--no-cache", "--out",
                        str(out), "--ray", cluster.address, "--retries", "0", "--json",
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _kill_first_task(cluster, p)
        stdout, stderr = p.communicate(timeout=600)
    finally:
        p.kill()
    assert p.returncode == 2, stderr
    rows = json.loads(stdout)
    failed = [r for r in rows if not r["ok"]]
    assert len(failed) == 1 and "the Ray worker was lost 1 time(s)" in failed[0]["error"]
    built = [r["bundle"] for r in rows if r["ok"]]
    assert len(built) == 1 and [d.name for d in out.iterdir()] == built  # nothing half-written beside it
    assert stderr.strip().splitlines()[-1].startswith(f"error: 1 of 2 pairs failed: {failed[0]['bundle']}: ")
