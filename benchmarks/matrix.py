"""A build matrix on this machine, as a user runs it, and what it would take on N nodes.

    python benchmarks/matrix.py [--variants lite0,lite1,lite2] [--targets all] [--calib DIR] [--nodes 2,4,8]

One `edgekit build --variant V --target T --json` run, serial, with an empty stage cache: its wall time is the
matrix's serial time here. Each pair's own time comes from the summary. On a cluster each node keeps its own cache
(unless --cache-dir names a shared one), so a pair that found stages cached here (x86 after onnx: export and
quantize) would build them again there: its cold time adds back what those stages took for the pair that made them.
The expected wall time on N nodes packs those cold times longest first, one build per node at a time (a node like
this one: 2 cores). Prints a Markdown table with the machine and writes benchmarks/results/matrix.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgekit.cluster.matrix import expected_wall_s
from edgekit.device.system import cpu_model

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SAMPLE = REPO.parent / "shared" / "data" / "imagenet-sample"


def cold_seconds(rows: list[dict]) -> dict[str, float]:
    """Each pair's time as a node with an empty cache of its own would take it."""
    made: dict[tuple[str, str], float] = {}  # (variant, stage) -> seconds, where the stage ran rather than hit
    for r in rows:
        for stage, s in r["manifest"]["timings"].items():
            if isinstance(s, dict) and not s["cached"]:
                made.setdefault((r["variant"], stage), s["seconds"])
    out = {}
    for r in rows:
        extra = sum(made.get((r["variant"], stage), 0.0) for stage, s in r["manifest"]["timings"].items()
                    if isinstance(s, dict) and s["cached"])
        out[r["bundle"]] = r["seconds"] + extra
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="lite0,lite1,lite2")
    ap.add_argument("--targets", default="all")
    ap.add_argument("--calib", default=str(DEFAULT_SAMPLE) if DEFAULT_SAMPLE.is_dir() else None)
    ap.add_argument("--num-calib", default="200")
    ap.add_argument("--num-val", default="300")
    ap.add_argument("--nodes", default="2,4,8")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "matrix.json"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgekit-matrix-") as td:
        cmd = [sys.executable, "-m", "edgekit.cli", "build", "--variant", a.variants, "--target", a.targets,
               "--num-calib", a.num_calib, "--num-val", a.num_val, "--out", f"{td}/dist", "--cache-dir",
               f"{td}/cache", "--json"] + (["--calib", a.calib] if a.calib else [])
        t = time.perf_counter()
        r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)  # progress goes to our stderr
        wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"the matrix failed (exit {r.returncode}); its summary is above")
    rows = json.loads(r.stdout)
    cold = cold_seconds(rows)
    nodes = [int(n) for n in a.nodes.split(",")]
    doc = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
           "command": " ".join(cmd[1:]).replace(tempfile.gettempdir(), "$TMP"), "serial_wall_s": round(wall, 1),
           "pairs": [{"bundle": x["bundle"], "seconds": x["seconds"], "cached": x["cached"],
                      "cold_seconds": round(cold[x["bundle"]], 1)} for x in rows],
           "expected_wall_s": {str(n): round(expected_wall_s(list(cold.values()), n), 1) for n in nodes}}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"Build matrix {a.variants} x {a.targets} on {doc['machine']['cpu']} ({doc['machine']['cores']} cores): "
          f"serial {wall / 60:.1f} min with one cache\n")
    print("| pair | here s | cached here | cold s (a node of its own) |\n|---|---|---|---|")
    for p in doc["pairs"]:
        print(f"| {p['bundle']} | {p['seconds']:.1f} | {p['cached']} | {p['cold_seconds']:.1f} |")
    print("\n| nodes | expected wall time |\n|---|---|")
    print(f"| 1 (serial here) | {wall / 60:.1f} min |")
    for n, s in doc["expected_wall_s"].items():
        print(f"| {n} | {s / 60:.1f} min |")
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
