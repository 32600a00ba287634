"""How well edgekit.near_ties predicts INT8/FP32 top-1 disagreements: every validation run in a stage cache.

Each `validate` cache entry holds one INT8 model's and its FP32 reference's logits on the held-out images. For each,
the analysis's expected disagreements (noise measured on that model) is set against the disagreements counted, and
so is the simpler estimate with one fixed spread in logits for every image. Prints a table and the totals; writes
benchmarks/results/near_ties.json.

    python benchmarks/near_ties_check.py [--cache-dir DIR] [--images 300]
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from edgekit.analysis import near_ties

RESULTS = Path(__file__).parent / "results" / "near_ties.json"


def fixed_spread(fp32: np.ndarray, int8: np.ndarray) -> float:
    """Expected disagreements with one spread in logits for every image (what near_ties does not do)."""
    t1, t2, margin = near_ties.top2_margins(fp32)
    rows = np.arange(len(fp32))
    err = int8 - fp32
    sd = float((err[rows, t1] - err[rows, t2]).std())
    return float(near_ties.flip_probability(margin, np.full(len(fp32), sd)).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default=os.environ.get("EDGEKIT_CACHE_DIR", str(Path.home() / ".cache/edgekit")))
    ap.add_argument("--images", type=int, default=300, help="Only runs on this many validation images (0: all).")
    ap.add_argument("--json", default=str(RESULTS))
    args = ap.parse_args()
    rows = []
    for f in sorted(Path(args.cache_dir, "validate").glob("*/logits.npz")):
        z = np.load(f)
        fp32, int8 = z["fp32"].astype(np.float64), z["int8"].astype(np.float64)
        if args.images and len(fp32) != args.images:
            continue
        t = near_ties.analyse(fp32, int8, [int8], list(z["ids"]))
        rows.append({"entry": f.parent.name[:12], "images": len(fp32),
                     "counted": int((int8.argmax(1) != fp32.argmax(1)).sum()),
                     "expected": t["expected_disagreements"],
                     "expected_fixed_spread": round(fixed_spread(fp32, int8), 2),
                     "relative_margin_noise": t["relative_margin_noise"]})
    if not rows:
        raise SystemExit(f"no validation runs on {args.images} images in {args.cache_dir}/validate: build first")
    print(f"{'entry':12s} {'images':>6s} {'counted':>7s} {'expected':>8s} {'fixed':>7s}")
    for r in rows:
        print(f"{r['entry']:12s} {r['images']:6d} {r['counted']:7d} {r['expected']:8.2f} "
              f"{r['expected_fixed_spread']:7.2f}")
    total = {k: round(sum(r[k] for r in rows), 1) for k in ("counted", "expected", "expected_fixed_spread")}
    print(f"{len(rows)} runs: counted {total['counted']}, expected {total['expected']} "
          f"(fixed spread: {total['expected_fixed_spread']})")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"runs": rows, "total": total}, indent=2))


if __name__ == "__main__":
    main()
