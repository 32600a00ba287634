"""INT8-aware fine-tuning, measured: for each variant and target, `edgekit build` without and with `--int8-aware`
(one stage cache, so the second build reuses the post-training stages), as a user runs them; then the same for a
flowers12 model of `edgekit train` (head mode), calibrated on train/ and judged on test/.

    python benchmarks/int8_aware.py [--variants lite0,lite1,lite2] [--targets x86,onnx,arm64] [--flowers lite0]

Per pair: agreement, top-1 drop and logit SQNR on the held-out images without and with, what the fine-tuning kept,
its own time (x86 and onnx share one route, hence one fine-tuning: the second is a cache hit) and the int8
artifacts' 1-thread p50 latency (the same graph with other integers: it should not move). Prints Markdown with the
machine and writes benchmarks/results/int8_aware.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pipeline_cost  # beside this script: the same `edgekit build` runner the other benchmarks use

from edgekit.core.intervals import percent

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO.parent / "shared" / "data" / "imagenet-sample"
FLOWERS = REPO.parent / "shared" / "data" / "flowers12"


def p50(bundle: Path, work: Path, runs: int) -> float:
    """The int8 artifact's 1-thread p50 (ms)."""
    return pipeline_cost.bench(bundle, work, runs, threads="1")["latency"]["1"]["int8"]["p50_ms"]


def figures(b: pipeline_cost.Build) -> dict:
    v = b.manifest["validation"]
    return {"agreement": v["top1_agreement"], "agreement_ci95": v.get("top1_agreement_ci95"),
            "drop_points": v.get("top1_drop_points"), "drop_points_ci95": v.get("top1_drop_points_ci95"),
            "top1_int8": v.get("top1_int8"), "top1_int8_ci95": v.get("top1_int8_ci95"),
            "top1_fp32": v.get("top1_fp32"), "top1_fp32_ci95": v.get("top1_fp32_ci95"),
            "logit_sqnr_db": v["logit_sqnr_db"],
            "build_s": round(b.wall_s, 1)}


def pair(variant: str, target: str, work: Path, cache: Path, common: list[str], runs: int) -> dict:
    try:
        ptq = pipeline_cost.build(variant, target, work / "ptq", cache, common)
        tuned = pipeline_cost.build(variant, target, work / "tuned", cache, common + ["--int8-aware"])
    except pipeline_cost.BuildFailed as e:
        sys.exit(str(e))
    rec = tuned.manifest["int8_aware"]
    stage = tuned.manifest["timings"].get("int8-aware", {})
    row = {"variant": variant, "target": target, "images": ptq.manifest["validation"]["images"],
           "ptq": figures(ptq), "tuned": figures(tuned), "shipped": rec["shipped"], "kept": rec["kept"],
           # the fine-tuned model's own validation, whether or not it shipped (absent when nothing was kept)
           "tuned_candidate": (rec.get("validation") or {}).get("tuned"), "decided_on": rec.get("decided_on"),
           "held_out": {"before": rec["held_out_before"], "after": rec["held_out_after"]},
           "written": rec.get("written"), "tune_s": stage.get("seconds"), "tune_cached": stage.get("cached"),
           "latency_p50_ms": {"ptq": p50(ptq.bundle, work, runs), "tuned": p50(tuned.bundle, work, runs)}}
    a, b = row["ptq"], row["tuned"]
    print(f"{variant} {target}: agreement {100 * a['agreement']:.2f} -> {100 * b['agreement']:.2f} %, SQNR "
          f"{a['logit_sqnr_db']:.2f} -> {b['logit_sqnr_db']:.2f} dB, "
          f"{'shipped' if row['shipped'] else 'kept on held-out, lost on validation' if row['kept'] else 'not kept'}, "
          f"fine-tuning {row['tune_s']} s"
          f"{' (cached)' if row['tune_cached'] else ''}, p50 {row['latency_p50_ms']['ptq']:.2f} -> "
          f"{row['latency_p50_ms']['tuned']:.2f} ms", file=sys.stderr, flush=True)
    return row


def train_head(variant: str, work: Path) -> Path:
    ck = work / f"flowers-{variant}.pt"
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", "train", "--data", str(FLOWERS / "train"), "--variant",
                        variant, "--mode", "head", "--out", str(ck), "--force"], capture_output=True, text=True,
                       cwd=REPO)
    if r.returncode != 0:
        sys.exit(f"edgekit train {variant} failed: {r.stderr.strip().splitlines()[-1:]}")
    return ck


def table(rows: list[dict], label: str, top1: bool) -> list[str]:
    """Post-training against the fine-tuned model, each on the validation images, and which of the two shipped."""
    head = ("| model | target | shipped INT8 top-1 (FP32) | " if top1 else "| model | target | ") + \
           "agreement: post-training | fine-tuned | logit SQNR post-training -> fine-tuned | ships | fine-tuning | " \
           "p50 1 thread |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        a, t = r["ptq"], r["tuned_candidate"]
        cells = [f"{label}{r['variant']}", r["target"]]
        if top1:
            cells.append(f"{percent(r['tuned']['top1_int8'], r['tuned'].get('top1_int8_ci95'))} "
                         f"({percent(a['top1_fp32'], a.get('top1_fp32_ci95'))})")
        cells += [percent(a["agreement"], a["agreement_ci95"]),
                  percent(t["top1_agreement"], t.get("top1_agreement_ci95")) if t else "not kept (held-out images)",
                  f"{a['logit_sqnr_db']:.2f} -> {t['logit_sqnr_db']:.2f} dB" if t else "—",
                  "fine-tuned" if r["shipped"] else "post-training",
                  f"{r['tune_s']:.0f} s" + (" (shared)" if r["tune_cached"] else ""),
                  f"{r['latency_p50_ms']['ptq']:.2f} / {r['latency_p50_ms']['tuned']:.2f} ms"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="lite0,lite1,lite2")
    ap.add_argument("--targets", default="x86,onnx,arm64")
    ap.add_argument("--flowers", default="lite0", help="variants trained on flowers12 (head mode); '' for none")
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "int8_aware.json"))
    a = ap.parse_args()
    if not SAMPLE.is_dir():
        sys.exit(f"{SAMPLE} is absent: this benchmark calibrates on 200 of its photos and validates on the other 300")
    targets = a.targets.split(",")
    rows, flowers = [], []
    with tempfile.TemporaryDirectory() as td:
        work = Path(td)
        common = ["--calib", str(SAMPLE), "--num-calib", "200"]
        for variant in a.variants.split(","):
            for target in targets:
                rows.append(pair(variant, target, work, work / f"cache-{variant}", common, a.runs))
        for variant in filter(None, a.flowers.split(",")):
            ck = train_head(variant, work)
            fc = ["--weights", str(ck), "--calib", str(FLOWERS / "train"), "--val", str(FLOWERS / "test")]
            for target in targets:
                flowers.append(pair(variant, target, work, work / f"cache-flowers-{variant}", fc, a.runs))
    machine = pipeline_cost.cpu()
    lines = [f"Machine: {machine}. ImageNet: calibrated on 200 of ../shared/data/imagenet-sample, figures on the other "
             "300 images (validation), each model against the FP32 one; in brackets the 95 % interval (Wilson). The "
             "build ships the fine-tuned model only if it scores at least as well there.", ""] + table(rows, "", False)
    if flowers:
        lines += ["", "flowers12 (`edgekit train --mode head`): calibrated on train/, figures on test/ (240 photos).",
                  ""] + table(flowers, "flowers12-", True)
    print("\n".join(lines))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"machine": machine, "imagenet": rows, "flowers12": flowers, "markdown": lines},
                                      indent=2) + "\n")


if __name__ == "__main__":
    main()
