"""The README's headline table: for each variant and target, a cold `edgekit build` (its own process, fresh cache)
and `edgekit bench` of the bundle on this machine, as a user runs them.

    python benchmarks/headline.py [--variants lite0,lite1,lite2] [--targets x86,onnx,arm64] [--calib DIR]

Prints a Markdown table (agreement, top-1 drop, INT8/FP32 p50 at 1 thread, build time) with the machine, and writes
benchmarks/results/headline.json. arm64 latency here is LiteRT's x86 kernels, not a Raspberry Pi's.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pipeline_cost  # beside this script: the same `edgekit build` runner the suite uses

from edgekit.core.intervals import percent, points

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SAMPLE = REPO.parent / "shared" / "data" / "imagenet-sample"


def table(rows: list[dict]) -> list[str]:
    lines = ["| variant | target | runtime | agreement | top-1 FP32 → INT8 (drop in points) | INT8 p50 (1 thr) | "
             "FP32 p50 (1 thr) | INT8/FP32 | cold build |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        l1 = r["latency"]["1"]
        drop = points(r["drop_points"], r["drop_points_ci95"], unit="")
        top1 = (f"{percent(r['top1_fp32'], r.get('top1_fp32_ci95'))} → "
                f"{percent(r['top1_int8'], r.get('top1_int8_ci95'))} ({drop})" if r["top1_fp32"] is not None else "—")
        lines.append(f"| {r['variant']} | {r['target']} | {r['runtime']} | "
                     f"{percent(r['agreement'], r['agreement_ci95'])} | {top1} | "
                     f"{l1['int8_p50_ms']:.2f} ms | {l1['fp32_p50_ms']:.2f} ms | "
                     f"{l1['int8_p50_ms'] / l1['fp32_p50_ms']:.2f} | {r['cold_build_s']:.0f} s |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="lite0,lite1,lite2")
    ap.add_argument("--targets", default="x86,onnx,arm64")
    ap.add_argument("--calib", default=str(DEFAULT_SAMPLE) if DEFAULT_SAMPLE.is_dir() else None)
    ap.add_argument("--num-calib", default="200")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "headline.json"))
    a = ap.parse_args()
    common = ["--num-calib", a.num_calib] + (["--calib", a.calib] if a.calib else [])
    rows = []
    with tempfile.TemporaryDirectory() as td:
        work = Path(td)
        for variant in a.variants.split(","):
            for target in a.targets.split(","):
                try:  # a fresh cache per pair: every build is cold
                    b = pipeline_cost.build(variant, target, work / "dist", work / f"cache-{variant}-{target}", common)
                except pipeline_cost.BuildFailed as e:
                    sys.exit(str(e))
                rep = pipeline_cost.bench(b.bundle, work, a.runs)
                v = b.manifest["validation"]
                lat = {t: {"int8_p50_ms": per["int8"]["p50_ms"], "fp32_p50_ms": per["fp32"]["p50_ms"],
                           "int8_speedup": per["int8_speedup"]} for t, per in rep["latency"].items()}
                rows.append({"variant": variant, "target": target, "cold_build_s": round(b.wall_s, 1),
                             "peak_build_mb": round(b.peak_mb), "val_images": v.get("images"),
                             "agreement": v.get("top1_agreement"), "top1_fp32": v.get("top1_fp32"),
                             "top1_int8": v.get("top1_int8"), "drop_points": v.get("top1_drop_points"),
                             "logit_sqnr_db": v.get("logit_sqnr_db"), "latency": lat,
                             **{f"{k}_ci95": v.get(f"{m}_ci95") for k, m in (
                                 ("agreement", "top1_agreement"), ("top1_fp32", "top1_fp32"),
                                 ("top1_int8", "top1_int8"), ("drop_points", "top1_drop_points"))},
                             "runtime": f"{rep['device']['runtime_package']} {rep['device']['runtime_version']}"})
                print(f"{variant} {target}: cold {b.wall_s:.1f} s, agreement {100 * v['top1_agreement']:.2f} %, "
                      f"1 thread INT8 {lat['1']['int8_p50_ms']:.2f} ms / FP32 {lat['1']['fp32_p50_ms']:.2f} ms",
                      file=sys.stderr, flush=True)
        machine = rep["device"]
    lines = [f"Machine: {pipeline_cost.cpu()}; {a.num_calib} calibration images"
             f"{' from ' + a.calib if a.calib else ''}, validation on the rest (held out); in brackets the 95 % "
             "interval (Wilson for the agreement and top-1, Newcombe's paired interval for the drop in top-1 points).",
             ""] + table(rows)
    print("\n".join(lines))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"machine": machine, "rows": rows, "markdown": lines}, indent=2) + "\n")
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
