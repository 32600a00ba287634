"""edgekit against the tools people would use instead, measured on this machine in one run.

    python benchmarks/suite.py            # full: lite0-lite2 on x86/onnx/arm64, lite0-lite4 scaling (<= 15 min)
    python benchmarks/suite.py --quick    # lite0 only, fewer images and runs (<= 3 min): a smoke check

Writes BENCHMARKS.md (tables) and benchmarks/results/suite.json (every figure). Sections:
1. pipeline cost: `edgekit build` cold and cached, per stage, peak memory; lite0 -> lite4 scaling (x86; lite3/lite4
   with random weights, which cost the same to build);
2. artifact speed: every path in paths.PATHS at batch 1, 1 and 2 threads, runs interleaved across paths, medians
   with spread, ratios to PyTorch eager and to the fastest FP32, achieved GMAC/s;
3. fidelity: each path against PyTorch FP32 on the same held-out images (agreement, top-1 drop, logit SQNR).
Never part of the unit tests.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paths as paths_mod  # noqa: E402
import pipeline_cost  # noqa: E402
import report  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO.parent / "shared" / "data" / "imagenet-sample"
TARGETS = ["x86", "onnx", "arm64"]


@dataclass(frozen=True)
class Mode:
    variants: tuple[str, ...]
    scaling: tuple[str, ...]  # built for x86 only, on top of `variants`
    num_calib: int
    num_val: int
    runs: int
    warmup: int


FULL = Mode(("lite0", "lite1", "lite2"), ("lite3", "lite4"), 48, 64, 20, 5)
QUICK = Mode(("lite0",), (), 32, 32, 10, 2)
SCALING_VAL = 16  # lite3/lite4 have random weights: their validation only has to run, not to mean anything
PAUSE_S = 0.05  # at 2 threads, between runs of different paths (harness.interleaved)


class Clock:
    def __init__(self):
        self.t0 = time.perf_counter()

    def say(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:6.0f} s] {msg}", file=sys.stderr, flush=True)


def selection(variant, mode: Mode, calib: str | None):
    from edgekit.builder import calibration
    from edgekit.builder.classes import imagenet1k
    from edgekit.core import contract
    from edgekit.device import imagesets

    sel = calibration.select(calib, mode.num_calib, mode.num_val, None, imagenet1k())
    pre = contract.preprocessing(variant)
    return imagesets.load_pixels(sel.calib, pre), imagesets.load_pixels(sel.val, pre)


def measure_variant(name: str, bundles: dict, mode: Mode, calib: str | None, work: Path, clock: Clock) -> dict:
    """Speed (1 and 2 threads) and fidelity of every path for one variant."""
    from edgekit.models.weights import resolve_weights
    from edgekit.core import arch, contract
    from edgekit.core.variants import get_variant
    from edgekit.device import harness, metrics, preprocess

    v = get_variant(name)
    weights = resolve_weights(v, None, False)
    cal, val = selection(v, mode, calib)
    onnx_root, onnx_m = bundles["onnx"]
    t = time.perf_counter()
    nncf_ir = paths_mod.nncf_quantize(onnx_root / onnx_m["artifacts"]["fp32"],
                                      preprocess.to_input(cal.pixels, contract.from_manifest(onnx_m, "fp32")),
                                      work / f"{name}-nncf.xml")
    nncf_s = time.perf_counter() - t
    clock.say(f"{name}: nncf.quantize {nncf_s:.1f} s")
    gmac = arch.count_macs(v) / 1e9
    speed = {}
    for threads in (1, 2):
        opened = {p.name: paths_mod.open_path(p, bundles, v, weights, nncf_ir, threads) for p in paths_mod.PATHS}
        x = {k: o.to_input(val.pixels[:1]) for k, o in opened.items()}
        r = harness.interleaved({k: o.run for k, o in opened.items()}, x, mode.runs, mode.warmup, lambda n: None,
                              PAUSE_S if threads > 1 else 0.0)
        speed[threads] = {k: {"p50_ms": s["p50_ms"], "p90_ms": s["p90_ms"], "min_ms": s["min_ms"],
                              "gmac_per_s": gmac / (s["p50_ms"] / 1e3)} for k, s in r.items()}
        clock.say(f"{name}: speed at {threads} thread(s), {mode.runs} interleaved runs of {len(opened)} paths")
    logits = {}
    for k, o in opened.items():  # the last speed round's runners (2 threads): nothing to load or compile again
        xs = o.to_input(val.pixels)
        logits[k] = np.concatenate([o.run(xs[i:i + 1]) for i in range(len(xs))])
    ref = logits[paths_mod.EAGER]
    fidelity = {k: metrics.drift(ref, lg, val.labels) for k, lg in logits.items() if k != paths_mod.EAGER}
    clock.say(f"{name}: fidelity on {len(val.pixels)} held-out images")
    return {"variant": name, "gmac": gmac, "nncf_quantize_s": round(nncf_s, 1), "speed": speed,
            "fidelity": fidelity, "val_images": int(len(val.pixels)), "calib_images": int(len(cal.pixels))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="lite0 only, fewer images and runs (about 3 minutes)")
    ap.add_argument("--calib", default=str(SAMPLE) if SAMPLE.is_dir() else None,
                    help="calibration/validation images [default: ../shared/data/imagenet-sample, else the "
                         "embedded photographs]")
    ap.add_argument("--md", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "suite.json"))
    ap.add_argument("--render", action="store_true",
                    help="measure nothing: write --md again from the figures already in --json")
    a = ap.parse_args()
    if a.render:
        Path(a.md).write_text(report.render(json.loads(Path(a.json).read_text())))
        return
    mode = QUICK if a.quick else FULL
    clock = Clock()
    common = ["--num-calib", str(mode.num_calib), "--num-val", str(mode.num_val)] + (["--calib", a.calib]
                                                                                   if a.calib else [])
    doc: dict = {"mode": "quick" if a.quick else "full",
                 "settings": {**mode.__dict__, "pause_s_at_2_threads": PAUSE_S, "scaling_val": SCALING_VAL}, "calibration": a.calib or
                 "embedded default photographs", "pipeline": [], "cached": [], "scaling": [], "artifacts": []}
    with tempfile.TemporaryDirectory(prefix="edgekit-suite-") as td:
        work = Path(td)
        try:
            for name in mode.variants:
                cold, warm = pipeline_cost.variant_builds(name, TARGETS, work, common)
                doc["pipeline"] += [b.row() for b in cold]
                doc["cached"] += [b.row() for b in warm]
                clock.say(f"{name}: built for {', '.join(TARGETS)} (cold {sum(b.wall_s for b in cold):.0f} s)")
                bundles = {b.target: (b.bundle, b.manifest) for b in cold}
                doc["artifacts"].append(measure_variant(name, bundles, mode, a.calib, work, clock))
            for name in mode.scaling:
                b = pipeline_cost.build(name, "x86", work / "dist", work / f"cache-{name}",
                                        common + ["--random-weights", "--num-val", str(SCALING_VAL)])
                doc["scaling"].append(b.row())
                clock.say(f"{name}: x86 cold build (random weights) {b.wall_s:.0f} s")
        except pipeline_cost.BuildFailed as e:
            sys.exit(f"error: {e}")
    doc["machine"] = report.machine()
    doc["total_s"] = round(time.perf_counter() - clock.t0, 1)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(doc, indent=2))
    md = report.render(doc)
    Path(a.md).write_text(md)
    print(md)
    clock.say(f"wrote {a.md} and {a.json}")


if __name__ == "__main__":
    main()
