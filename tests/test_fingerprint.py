"""The device fingerprint and the INT8 verdict, on fixture trees of a Raspberry Pi 4, a Pi 5 and two x86 machines
(tests/fixtures/sysroots), and on this machine through a real bench run."""
import json
import shutil
from pathlib import Path

import pytest

from edgekit.device import fingerprint as fpm
from edgekit.device.verdict import verdict

from .conftest import run_cli

FIXTURES = Path(__file__).parent / "fixtures" / "sysroots"


def _fp(name: str) -> dict:
    return fpm.fingerprint(FIXTURES / name)


@pytest.mark.parametrize("name, board, cpu, features, fast", [
    ("pi4", "Raspberry Pi 4 Model B Rev 1.4", "Cortex-A72", {"asimddp": False, "i8mm": False}, False),
    ("pi5", "Raspberry Pi 5 Model B Rev 1.0", "Cortex-A76", {"asimddp": True, "i8mm": False}, True),
    ("x86-vnni", "Amazon EC2 m7a.large", "AMD EPYC 9R14 96-Core Processor",
     {"avx2": True, "avx512_vnni": True, "avx_vnni": False, "amx": False}, True),
    ("x86-avx2", "LENOVO 20KHCTO1WW", "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz",
     {"avx2": True, "avx512_vnni": False, "avx_vnni": False, "amx": False}, False),
])
def test_fingerprint_of_each_fixture(name, board, cpu, features, fast):
    fp = _fp(name)
    assert (fp["board"], fp["cpu"], fp["int8_features"], fpm.fast_int8(fp)) == (board, cpu, features, fast)
    assert fp["memory"]["total_mb"] > 1000 and fp["cores"] in (2, 4)


def test_pi_probes_governor_temperature_throttling():
    pi4, pi5 = _fp("pi4"), _fp("pi5")
    assert pi4["cpu_part"] == "0xd08" and pi5["cpu_part"] == "0xd0b"
    assert pi4["cpufreq"] == {"governor": "ondemand", "cur_mhz": 600, "min_mhz": 600, "max_mhz": 1800}
    assert pi4["soft_limit_c"] == 80.0 and pi5["soft_limit_c"] == 80.0  # Pi 4: firmware default; Pi 5: passive trip
    t4 = fpm.thermal(FIXTURES / "pi4")
    assert t4["temperature_c"] == pytest.approx(52.582)
    assert t4["throttled"] == {"raw": "0x50000", "now": [], "since_boot": ["under-voltage", "throttled"]}
    assert fpm.thermal(FIXTURES / "pi5")["throttled"]["raw"] == "0x0"
    # x86: the package sensor is preferred over the ACPI zone; no Pi firmware, so no throttled flags
    t86 = fpm.thermal(FIXTURES / "x86-avx2")
    assert t86["temperature_c"] == 45.0 and t86["throttled"] is None


def test_run_warnings_governor_throttling_heat(tmp_path):
    pi4 = _fp("pi4")
    same = fpm.thermal(FIXTURES / "pi4")
    w = fpm.run_warnings(pi4, same, same)
    assert [x["kind"] for x in w] == ["governor"]  # throttled since boot, but not during the run
    assert "governor is 'ondemand'" in w[0]["message"] and "went from" not in w[0]["message"]
    w = fpm.run_warnings(pi4, same, {**same, "freq_mhz": 1800})
    assert "it went from 600 to 1800 MHz in this one" in w[0]["message"]
    assert fpm.run_warnings(_fp("pi5"), fpm.thermal(FIXTURES / "pi5"), fpm.thermal(FIXTURES / "pi5")) == []
    # the board throttles and heats up during the run: a copy of the Pi 5 tree, changed between the two samples
    root = tmp_path / "pi5"
    shutil.copytree(FIXTURES / "pi5", root)
    before = fpm.thermal(root)
    (root / "sys/devices/platform/axi/axi:firmware/get_throttled").write_text("e0008\n")
    (root / "sys/class/thermal/thermal_zone0/temp").write_text("82100\n")
    w = fpm.run_warnings(fpm.fingerprint(root), before, fpm.thermal(root))
    assert [x["kind"] for x in w] == ["throttled", "heat"], w
    assert "soft temperature limit" in w[0]["message"] and "0xe0008" in w[0]["message"]
    assert "82.1 C" in w[1]["message"] and "soft limit of 80 C" in w[1]["message"]


def test_watch_catches_a_peak_between_the_samples(tmp_path):
    """Heat and a throttle flag that come and go during the run, invisible before and after it."""
    root = tmp_path / "pi5"
    shutil.copytree(FIXTURES / "pi5", root)
    zone, flags = root / "sys/class/thermal/thermal_zone0/temp", root / "sys/devices/platform/axi/axi:firmware/get_throttled"
    watch = fpm.Watch(root, every_s=0)
    zone.write_text("84500\n")
    flags.write_text("4\n")  # bit 2: throttled now
    watch.sample()
    zone.write_text("61000\n")
    flags.write_text("0\n")
    after = watch.done()
    assert after["max_temperature_c"] == 84.5 and after["throttled_seen"] == ["throttled"]
    assert after["temperature_c"] == 61.0
    w = fpm.run_warnings(fpm.fingerprint(root), watch.before, after)
    assert [x["kind"] for x in w] == ["throttled", "heat"] and "84.5 C" in w[1]["message"]


def _report(fp: dict, int8_ms: float, fp32_ms: float, warnings=()) -> dict:
    return {"latency": {"1": {"int8": {"p50_ms": int8_ms * 1.6}, "fp32": {"p50_ms": fp32_ms * 1.6}},
                        "4": {"int8": {"p50_ms": int8_ms}, "fp32": {"p50_ms": fp32_ms}}},
            "golden": {"images": 32, "int8_vs_fp32": {"top1_agreement": 0.96875}},
            "bundle": {"fp32_artifact": "model.fp32.tflite"}, "fingerprint": fp, "run_warnings": list(warnings)}


def test_verdict_causes_from_the_fingerprint():
    v = verdict(_report(_fp("pi5"), 20.0, 45.0))
    assert v["clearly_faster"] and v["threads"] == 4 and v["speedup"] == pytest.approx(2.25)
    assert v["line"].startswith("verdict: INT8 is 0.44x the FP32 latency here (4 threads) at 96.88 %")
    assert "pays off" in v["line"] and v["advice"] is None
    v = verdict(_report(_fp("pi4"), 95.0, 100.0))
    assert not v["clearly_faster"] and len(v["causes"]) == 1
    assert "Cortex-A72 has no dot-product instructions (asimddp/i8mm)" in v["line"]
    assert "model.fp32.tflite" in v["advice"] and v["advice"] in v["line"]
    v = verdict(_report(_fp("x86-avx2"), 9.0, 10.0))
    assert "no VNNI instructions (avx512_vnni/avx_vnni/amx)" in v["causes"][0]
    # a CPU that has the instructions but a run that throttled: the throttling is the cause
    v = verdict(_report(_fp("pi5"), 40.0, 45.0, [{"kind": "throttled", "message": "..."}]))
    assert v["causes"] == ["the board throttled or overheated during the run"]
    v = verdict(_report(_fp("x86-avx2"), 9.0, 10.0, [{"kind": "governor", "message": "..."}]))
    assert len(v["causes"]) == 2 and "governor" in v["causes"][1]
    # at another thread count than the largest: the figures of that one
    assert verdict(_report(_fp("pi5"), 20.0, 45.0), threads=1)["threads"] == 1
    # a clear gain on a CPU without the instructions is still a gain: no causes hunted for
    assert verdict(_report(_fp("pi4"), 50.0, 100.0))["causes"] == []


def test_bench_records_this_machine_and_a_fixture_board(tiny_bundle, tmp_path):
    """A real bench run: its own fingerprint, thermal samples and verdict, in the JSON, the history and the printed
    header; and with EDGEKIT_SYSROOT a Pi 4 tree, whose governor makes the run not comparable."""
    bundle = tiny_bundle
    env = {"EDGEKIT_HISTORY": str(tmp_path / "h.jsonl")}
    r = run_cli("bench", str(bundle), "--runs", "3", "--threads", "1", "--json", str(tmp_path / "here.json"),
                env=env, check=True)
    rep = json.loads((tmp_path / "here.json").read_text())
    here = fpm.fingerprint(Path("/"))

    def steady(fp):  # what does not move between two probes (free memory and the current clock do)
        return {**fp, "memory": fp["memory"]["total_mb"], "cpufreq": {**fp["cpufreq"], "cur_mhz": None}}

    assert steady(rep["fingerprint"]) == steady(here)
    assert rep["device"]["cpu"] == here["cpu"]
    assert rep["fingerprint"]["cpu"] in r.stdout and "int8 instructions:" in r.stdout
    assert rep["verdict"]["line"] == r.stdout.strip().splitlines()[-1]
    assert rep["verdict"]["int8_over_fp32"] == pytest.approx(
        rep["latency"]["1"]["int8"]["p50_ms"] / rep["latency"]["1"]["fp32"]["p50_ms"])
    run_cli("bench", str(bundle), "--runs", "3", "--threads", "1", "--json", str(tmp_path / "pi4.json"),
            env={**env, "EDGEKIT_SYSROOT": str(FIXTURES / "pi4")}, check=True)
    pi4 = json.loads((tmp_path / "pi4.json").read_text())
    assert pi4["fingerprint"]["board"] == "Raspberry Pi 4 Model B Rev 1.4" and pi4["comparable"] is False
    assert pi4["device"]["cpu"] == "Cortex-A72" and pi4["device"]["cores"] == 4
    history = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert [h["fingerprint"]["board"] for h in history] == [rep["fingerprint"]["board"], pi4["fingerprint"]["board"]]
    assert all("verdict" in h and "thermal" in h for h in history)
    # edgekit report: one row per device, the Pi 4 one marked; --plot draws both
    r = run_cli("report", "--plot", str(tmp_path / "devices.png"), env=env, check=True)
    rows = r.stdout.strip().splitlines()[1:]
    assert len(rows) == 2 and "Raspberry Pi 4 Model B Rev 1.4 (Cortex-A72)" in rows[1]
    assert "not comparable" in rows[1] and ("not comparable" in rows[0]) == (not rep["comparable"])
    assert f"{rep['verdict']['speedup']:.2f}x" in rows[0]
    from PIL import Image

    with Image.open(tmp_path / "devices.png") as im:
        assert im.format == "PNG" and im.size[1] > 100


def test_report_skips_a_broken_history_line_and_refuses_bad_inputs(tiny_bundle, tmp_path):
    env = {"EDGEKIT_HISTORY": str(tmp_path / "h.jsonl")}
    run_cli("bench", str(tiny_bundle), "--runs", "2", "--threads", "1", env=env, check=True)
    with open(tmp_path / "h.jsonl", "a") as f:
        f.write('{"kind": "edgekit-bench", "cut short\n')  # a run killed while writing
    r = run_cli("report", env=env, check=True)
    assert len(r.stdout.strip().splitlines()) == 2 and "skipped 1 line(s) that are not valid JSON (line 2)" in r.stderr
    r = run_cli("report", "--plot", str(tmp_path / "chart.txt"), env=env)
    assert r.returncode == 2 and "ending in .png" in r.stderr and not (tmp_path / "chart.txt").exists()
    r = run_cli("bench", str(tiny_bundle), "--runs", "2", env={**env, "EDGEKIT_SYSROOT": str(tmp_path / "no")})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines[-1] == f"error: EDGEKIT_SYSROOT={tmp_path / 'no'} is not a directory: unset it " \
                                              "to probe this machine"
