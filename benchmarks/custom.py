"""Your own classes, measured: `edgekit train` on flowers12's train/ (each variant, each mode), then `edgekit build`
of the checkpoint for every target, calibrated on train/ and validated on test/ (240 photographs the training never
saw), as a user runs them (separate processes).

    python benchmarks/custom.py [--variants lite0,lite1] [--modes head,finetune] [--targets x86,onnx,arm64]

Prints a Markdown table (training wall time, FP32 top-1 on test/, INT8 top-1 and agreement per target) with the
machine, and writes benchmarks/results/custom.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pipeline_cost  # beside this script: the same `edgekit build` runner the other benchmarks use

from edgekit.core.intervals import percent

REPO = Path(__file__).resolve().parent.parent
FLOWERS = REPO.parent / "shared" / "data" / "flowers12"


def train(variant: str, mode: str, data: Path, out: Path, extra: list[str]) -> tuple[float, dict]:
    args = [sys.executable, "-m", "edgekit.cli", "train", "--data", str(data), "--variant", variant, "--mode", mode,
            "--out", str(out), "--force", "--json", *extra]
    t = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"edgekit train {variant} {mode} failed: {r.stderr.strip().splitlines()[-1:]}")
    return wall, json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(FLOWERS))
    ap.add_argument("--variants", default="lite0,lite1")
    ap.add_argument("--modes", default="head,finetune")
    ap.add_argument("--targets", default="x86,onnx,arm64")
    ap.add_argument("--num-calib", default="200")
    ap.add_argument("--train-args", default="", help="more `edgekit train` options, one string")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "custom.json"))
    a = ap.parse_args()
    data = Path(a.data)
    if not (data / "train").is_dir() or not (data / "test").is_dir():
        sys.exit(f"{data} needs train/ and test/, one folder per class (../shared/data/flowers12)")
    rows = []
    with tempfile.TemporaryDirectory() as td:
        work = Path(td)
        for variant in a.variants.split(","):
            for mode in a.modes.split(","):
                ck = work / f"flowers-{variant}-{mode}.pt"
                wall, rec = train(variant, mode, data / "train", ck, a.train_args.split())
                row = {"variant": variant, "mode": mode, "train_s": round(wall, 1), "epochs_run": rec["epochs_run"],
                       "best_epoch": rec["best_epoch"], "holdout_accuracy": rec["val_accuracy"], "targets": {}}
                print(f"{variant} {mode}: trained in {wall:.1f} s, {rec['epochs_run']} epochs (best "
                      f"{rec['best_epoch']}), held-out accuracy {100 * rec['val_accuracy']:.2f} %",
                      file=sys.stderr, flush=True)
                common = ["--weights", str(ck), "--name", f"flowers-{mode}", "--calib", str(data / "train"),
                          "--num-calib", a.num_calib, "--val", str(data / "test")]
                for target in a.targets.split(","):
                    try:
                        b = pipeline_cost.build(variant, target, work / "dist", work / "cache", common)
                    except pipeline_cost.BuildFailed as e:
                        sys.exit(str(e))
                    v = b.manifest["validation"]
                    row["targets"][target] = {"images": v["images"], "top1_fp32": v["top1_fp32"],
                                              "top1_fp32_ci95": v.get("top1_fp32_ci95"),
                                              "top1_int8": v["top1_int8"], "top1_int8_ci95": v.get("top1_int8_ci95"),
                                              "agreement": v["top1_agreement"],
                                              "agreement_ci95": v.get("top1_agreement_ci95"),
                                              "drop_points": v["top1_drop_points"],
                                              "drop_points_ci95": v.get("top1_drop_points_ci95"),
                                              "logit_sqnr_db": v["logit_sqnr_db"], "build_s": round(b.wall_s, 1),
                                              "warnings": b.manifest.get("warnings")}
                    print(f"  {target}: test top-1 FP32 {100 * v['top1_fp32']:.2f} % -> INT8 "
                          f"{100 * v['top1_int8']:.2f} %, agreement {100 * v['top1_agreement']:.2f} %, SQNR "
                          f"{v['logit_sqnr_db']:.1f} dB", file=sys.stderr, flush=True)
                rows.append(row)
    machine = pipeline_cost.cpu()
    targets = a.targets.split(",")
    lines = [f"Machine: {machine}. flowers12: trained on train/ (720 photos, 12 classes), INT8 calibrated on "
             f"{a.num_calib} of train/, every figure on test/ (240 photos); in brackets the 95 % interval "
             "(Wilson).", "",
             "| variant | mode | training | FP32 top-1 (test) | " + " | ".join(
                 f"{t} INT8 top-1 / agreement" for t in targets) + " |",
             "|---|---|---|---|" + "---|" * len(targets)]
    for r in rows:
        first = r["targets"][targets[0]]
        cells = [f"{percent(c['top1_int8'], c['top1_int8_ci95'])} / {percent(c['agreement'], c['agreement_ci95'])}"
                 for c in (r["targets"][t] for t in targets)]
        lines.append(f"| {r['variant']} | {r['mode']} | {r['train_s'] / 60:.1f} min ({r['epochs_run']} epochs) | "
                     f"{percent(first['top1_fp32'], first['top1_fp32_ci95'])} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"machine": machine, "rows": rows, "markdown": lines}, indent=2) + "\n")


if __name__ == "__main__":
    main()
