"""Build-time and fidelity benchmark: cold build (empty cache) and identical re-run, per variant and target.

    python benchmarks/build_bench.py --variants lite0 --targets x86 [--calib DIR] [--num-calib 200]

Prints a table and writes benchmarks/results/build.json. Wall-clock times include process start, as a user sees them.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import pipeline_cost  # beside this script: the same `edgekit build` runner the suite uses

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SAMPLE = REPO.parent / "shared" / "data" / "imagenet-sample"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="lite0")
    ap.add_argument("--targets", default="x86")
    ap.add_argument("--calib", default=str(DEFAULT_SAMPLE) if DEFAULT_SAMPLE.is_dir() else None)
    ap.add_argument("--num-calib", default="200")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "build.json"))
    a = ap.parse_args()
    rows = []
    for variant in a.variants.split(","):
        for target in a.targets.split(","):
            with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
                common = ["--num-calib", a.num_calib] + (["--calib", a.calib] if a.calib else [])
                try:
                    first = pipeline_cost.build(variant, target, Path(out), Path(cache), common)
                    again = pipeline_cost.build(variant, target, Path(out), Path(cache), common)
                except pipeline_cost.BuildFailed as e:
                    sys.exit(str(e))
                cold, m, warm, m2 = first.wall_s, first.manifest, again.wall_s, again.manifest
            v = m["validation"]
            rows.append({"variant": variant, "target": target, "cold_s": round(cold, 1), "cached_s": round(warm, 2),
                         "stages_cold": {k: s["seconds"] for k, s in m["timings"].items() if isinstance(s, dict)},
                         "all_cached_on_rerun": all(s["cached"] for s in m2["timings"].values()
                                                    if isinstance(s, dict)),
                         "calibration": m["calibration"]["source"], "calib_images": m["calibration"]["images_used"],
                         "val_images": v.get("images"), "agreement": v.get("top1_agreement"),
                         "top1_fp32": v.get("top1_fp32"), "top1_int8": v.get("top1_int8"),
                         "drop_points": v.get("top1_drop_points"), "logit_sqnr_db": v.get("logit_sqnr_db")})
            r = rows[-1]
            pct = (lambda x: f"{100 * x:.2f}" if x is not None else "-")
            print(f"{variant:6} {target:5} cold {r['cold_s']:6.1f} s  cached {r['cached_s']:5.2f} s  "
                  f"agree {pct(r['agreement'])} %  top-1 {pct(r['top1_fp32'])} -> {pct(r['top1_int8'])} "
                  f"({r['val_images']} held-out)  stages {r['stages_cold']}", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    from edgekit.device.system import machine

    Path(a.out).write_text(json.dumps({"machine": machine(), "python": platform.python_version(), "rows": rows},
                                      indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
