"""What `edgekit predict` prints: each input's top classes, the live line of a video or camera, the closing
summary (render.py holds every other command's tables)."""
from __future__ import annotations

from edgekit.core.intervals import percent


def predictions_table(result) -> str:
    head = result.input if result.frame is None else f"{result.input} frame {result.frame}"
    rows = [f"  {p.rank:>2}  {p.probability:6.3f}  " + (f"{p.wnid:10} " if p.wnid else "") + p.name
            for p in result.predictions]
    return "\n".join([head, *rows])


def frame_line(result) -> str:
    return f"frame {result.frame:>5}: " + ", ".join(f"{p.name} {p.probability:.3f}" for p in result.predictions)


def live_line(summary, result) -> str:
    rate = summary.classified / summary.seconds if summary.seconds > 0 else 0.0
    top = result.predictions[0]
    return f"{summary.read} frames, {rate:5.1f} frames/s classified, top-1: {top.name} ({top.probability:.2f})"


def predict_summary(s: dict) -> str:
    unit = "image" if s["kind"] == "image" else "frame"
    rate = f" ({s['per_second']:.1f} {unit}s/s)" if s["per_second"] else ""
    line = (f"summary of {s['source']}: {s['read']} {unit}{'s' if s['read'] != 1 else ''} read, {s['classified']} "
            f"classified in {s['seconds']:.2f} s{rate}")
    if s["failed"]:
        line += f", {s['failed']} unreadable"
    if s.get("labelled"):
        line += (f"; top-1 {percent(s['top1'], s.get('top1_ci95'))} (95 % interval) on the {s['labelled']} with a "
                 "label (class folder or file name)")
    if s["latency_ms"]:
        line += "; p50/p90 ms: " + ", ".join(f"{k} {v['p50']:.1f}/{v['p90']:.1f}" for k, v in s["latency_ms"].items())
    return line
