"""The board side on this machine, as a user runs it: what `edgekit predict` sustains on a video, split into its
steps, at INT8 and FP32, and the INT8 verdict of `edgekit bench`, per target.

    python benchmarks/board.py [--variant lite0] [--targets x86,onnx,arm64] [--frames 120] [--calib DIR]
                               [--codecs mjpg,ffv1] [--repeat 3] [--cache-dir DIR]

For each target: one `edgekit build` (cold, or from --cache-dir: two checkouts compared on the same bundles), then
`edgekit predict BUNDLE clip.avi --json` on 640x480 videos of `--frames` frames made from the sample photographs
(all cores, each precision, `--repeat` times: the median run by frames/s is reported), and `edgekit bench BUNDLE` for
the verdict. Two videos: MJPEG, what a USB camera sends (cheap to decode), and FFV1, lossless (its decoder costs more
than lite0's INT8 inference here). Prints a Markdown table with the machine and writes benchmarks/results/board.json. arm64 figures here are
LiteRT's x86 kernels, not a Raspberry Pi's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

import pipeline_cost  # beside this script: the same `edgekit build` runner the suite uses

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SAMPLE = REPO.parent / "shared" / "data" / "imagenet-sample"


def edgekit(*args: str, work: Path) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", *args], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "EDGEKIT_HISTORY": str(work / "history.jsonl")})
    if r.returncode != 0:
        sys.exit(f"edgekit {' '.join(args[:2])} failed: {r.stderr.strip().splitlines()[-1:]}")
    return r


def make_clip(images: Path, frames: int, path: Path, codec: str = "ffv1") -> Path:
    photos = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    if not photos:
        sys.exit(f"no photographs in {images} to make the video from")
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec.upper()), 30, (640, 480))
    for i in range(frames):
        rgb = np.asarray(Image.open(photos[i % len(photos)]).convert("RGB").resize((640, 480)))
        w.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    w.release()
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="lite0")
    ap.add_argument("--targets", default="x86,onnx,arm64")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--codecs", default="mjpg,ffv1", help="the videos' codecs (OpenCV fourcc names)")
    ap.add_argument("--calib", default=str(DEFAULT_SAMPLE) if DEFAULT_SAMPLE.is_dir() else None)
    ap.add_argument("--num-calib", default="200")
    ap.add_argument("--runs", default="30", help="edgekit bench runs per precision and thread count")
    ap.add_argument("--repeat", type=lambda v: max(1, int(v)), default=3,
                    help="predict runs per target and precision (median reported; at least 1)")
    ap.add_argument("--cache-dir", default=None, help="build cache kept between runs (default: a fresh one)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "board.json"))
    a = ap.parse_args()
    if not a.calib:
        sys.exit("the video is made from photographs: pass --calib DIR (default ../shared/data/imagenet-sample)")
    common = ["--num-calib", a.num_calib, "--calib", a.calib]
    rows, verdicts = [], {}
    with tempfile.TemporaryDirectory() as td:
        work = Path(td)
        clips = {c: make_clip(Path(a.calib), a.frames, work / f"clip-{c}.avi", c) for c in a.codecs.split(",")}
        for target in a.targets.split(","):
            try:
                cache = Path(a.cache_dir) if a.cache_dir else work / f"cache-{target}"
                b = pipeline_cost.build(a.variant, target, work / "dist", cache, common)
            except pipeline_cost.BuildFailed as e:
                sys.exit(str(e))
            for codec, clip in clips.items():
                for precision in ("int8", "fp32"):
                    runs = []
                    for _ in range(a.repeat):
                        out = edgekit("predict", str(b.bundle), str(clip), "--json", "--top", "1", "--precision",
                                      precision, work=work).stdout
                        runs.append(json.loads(out.strip().splitlines()[-1])["summary"])
                    runs.sort(key=lambda r: r["per_second"])
                    s = runs[len(runs) // 2]
                    rows.append({"target": target, "video": codec, "precision": precision, "frames": s["classified"],
                                 "frames_per_s": s["per_second"],
                                 "frames_per_s_runs": [r["per_second"] for r in runs],
                                 **{f"{k}_p50_ms": v["p50"] for k, v in s["latency_ms"].items()}})
                    spread = ", ".join(f"{r['per_second']:.1f}" for r in runs)
                    print(f"{target} {codec} {precision}: {s['per_second']:.1f} frames/s (runs: {spread})",
                          file=sys.stderr, flush=True)
            edgekit("bench", str(b.bundle), "--threads", "1,2", "--runs", a.runs, "--json", str(work / "b.json"),
                    work=work)
            rep = json.loads((work / "b.json").read_text())
            verdicts[target] = rep["verdict"]
            machine = rep["device"]
    lines = [f"Machine: {pipeline_cost.cpu()}; {a.variant}, {a.frames}-frame 640x480 videos; "
             "predict on all cores.", "",
             "| target | video | precision | frames/s | capture p50 | prepare p50 | inference p50 |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['target']} | {r['video'].upper()} | {r['precision'].upper()} | {r['frames_per_s']:.1f} | "
                     f"{r['capture_p50_ms']:.2f} ms | {r['prepare_p50_ms']:.2f} ms | {r['inference_p50_ms']:.2f} ms |")
    lines += [""] + [f"- {t}: {v['line']}" for t, v in verdicts.items()]
    print("\n".join(lines))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"machine": machine, "rows": rows, "verdicts": verdicts, "markdown": lines},
                                      indent=2) + "\n")
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
