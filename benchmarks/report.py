"""BENCHMARKS.md from the suite's JSON: tables only, every figure measured in the run that wrote it."""
from __future__ import annotations

import platform

import paths as paths_mod
import pipeline_cost

from edgekit.core.intervals import percent

# the done-when checks of the suite (issue 7), computed from the figures, never asserted by hand
NOISE = 0.05  # "within noise": medians of interleaved runs this close count as equal
ARM_RATIO = 0.55  # TFLite INT8 at most this share of TFLite FP32 latency


def machine() -> dict:
    from edgekit.builder.provenance import tool_versions
    from edgekit.device.system import machine as m

    tools = tool_versions()
    try:
        import nncf

        tools["nncf"] = nncf.__version__
    except ImportError:
        pass
    return {**m(), "described": pipeline_cost.cpu(), "python": platform.python_version(), "tools": tools}


def _stage_cell(s: dict | None) -> str:
    if s is None:
        return "—"
    return f"{s['seconds']:.1f}" + (" (cached)" if s["cached"] else "")


def _pipeline(doc: dict) -> list[str]:
    stages = []
    for r in doc["pipeline"]:
        for k in r["stages"]:
            if k not in stages:
                stages.append(k)
    out = ["## 1. Pipeline cost", "",
           f"`edgekit build` in its own process, {doc['settings']['num_calib']} calibration and "
           f"{doc['settings']['num_val']} validation images. Cold: an empty cache per variant, targets built in the "
           "order shown (onnx finds x86's export and quantize stages cached, as a user building both would). "
           "Cached: the same command again. Seconds; peak memory is the build process's max RSS.", "",
           "| variant | target | cold total s | " + " | ".join(stages) + " | peak MB | cached total s |",
           "|---|---|---|" + "---|" * len(stages) + "---|---|"]
    warm = {(r["variant"], r["target"]): r for r in doc["cached"]}
    for r in doc["pipeline"]:
        w = warm.get((r["variant"], r["target"]))
        out.append(f"| {r['variant']} | {r['target']} | {r['wall_s']:.1f} | "
                   + " | ".join(_stage_cell(r["stages"].get(k)) for k in stages)
                   + f" | {r['peak_mb']} | {w['wall_s'] if w else '—'} |")
    if doc["scaling"]:
        rows = [r for r in doc["pipeline"] if r["target"] == "x86"] + doc["scaling"]
        out += ["", f"Scaling, x86 target, cold (lite3 and lite4 with random weights, the same work, and "
                f"{doc['settings']['scaling_val']} validation images):", "",
                "| variant | GMAC | cold total s | export s | quantize s | peak MB |", "|---|---|---|---|---|---|"]
        from edgekit.core import arch
        from edgekit.core.variants import get_variant

        for r in rows:
            g = arch.count_macs(get_variant(r["variant"])) / 1e9
            st = r["stages"]
            out.append(f"| {r['variant']} | {g:.2f} | {r['wall_s']:.1f} | {st['export']['seconds']:.1f} | "
                       f"{st['quantize']['seconds']:.1f} | {r['peak_mb']} |")
    return out


def _speed(a: dict) -> list[str]:
    out = []
    for threads, rows in a["speed"].items():
        eager = rows[paths_mod.EAGER]["p50_ms"]
        fastest = min(r["p50_ms"] for k, r in rows.items() if _precision(k) == "fp32")
        out += ["", f"{a['variant']}, {threads} thread(s), batch 1 ({a['gmac']:.2f} GMAC):", "",
                "| path | p50 ms | min–p90 ms | × PyTorch eager | × fastest FP32 | GMAC/s |", "|---|---|---|---|---|---|"]
        for k, r in rows.items():
            out.append(f"| {k} | {r['p50_ms']:.2f} | {r['min_ms']:.2f}–{r['p90_ms']:.2f} | "
                       f"{r['p50_ms'] / eager:.2f} | {r['p50_ms'] / fastest:.2f} | {r['gmac_per_s']:.1f} |")
    return out


def _precision(name: str) -> str:
    return next(p.precision for p in paths_mod.PATHS if p.name == name)


def _drop(f: dict) -> str:
    if f.get("top1_drop_points") is None:
        return "n/a"
    lo_hi = f.get("top1_drop_points_ci95")
    return f"{f['top1_drop_points']:+.2f}" + (f" [{lo_hi[0]:.1f}, {lo_hi[1]:.1f}]" if lo_hi else "")


def _fidelity(arts: list[dict]) -> list[str]:
    names = [p.name for p in paths_mod.PATHS if p.name != paths_mod.EAGER]
    out = ["## 3. Fidelity", "", "Each path against PyTorch eager FP32 on the same held-out images: top-1 agreement / "
           "top-1 drop in points (labels) / logit SQNR; in brackets the 95 % interval (Wilson for the agreement, "
           "Newcombe's paired interval for the drop).", "",
           "| path | " + " | ".join(a["variant"] for a in arts) + " |", "|---|" + "---|" * len(arts)]
    for k in names:
        cells = []
        for a in arts:
            f = a["fidelity"][k]
            cells.append(f"{percent(f['top1_agreement'], f.get('top1_agreement_ci95'))} / "
                         f"{_drop(f)} / {f['logit_sqnr_db']:.1f} dB")
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    return out


def checks(arts: list[dict]) -> list[dict]:
    """Issue 7's done-when, per variant and thread count: our x86 INT8 at least as fast as NNCF's (within NOISE)
    and more faithful: higher logit SQNR and agreement not lower (on a few dozen held-out images one image moves the
    agreement by points, inside its interval, so agreement alone cannot rank the two); our TFLite INT8 at most
    ARM_RATIO of TFLite FP32."""
    out = []
    for a in arts:
        ours, nncf = a["fidelity"]["OpenVINO INT8 (edgekit)"], a["fidelity"][paths_mod.NNCF]
        for threads, rows in a["speed"].items():
            x86 = rows["OpenVINO INT8 (edgekit)"]["p50_ms"] / rows[paths_mod.NNCF]["p50_ms"]
            arm = rows["TFLite INT8 (edgekit)"]["p50_ms"] / rows["TFLite FP32 (LiteRT)"]["p50_ms"]
            out.append({"variant": a["variant"], "threads": threads, "x86_int8_vs_nncf_latency": round(x86, 3),
                        "x86_agreement_ours_vs_nncf": [ours["top1_agreement"], nncf["top1_agreement"]],
                        "x86_agreement_ci95_ours_vs_nncf": [ours.get("top1_agreement_ci95"),
                                                            nncf.get("top1_agreement_ci95")],
                        "x86_sqnr_ours_vs_nncf": [ours["logit_sqnr_db"], nncf["logit_sqnr_db"]],
                        "x86_ok": x86 <= 1 + NOISE and ours["logit_sqnr_db"] > nncf["logit_sqnr_db"]
                        and ours["top1_agreement"] >= nncf["top1_agreement"],
                        "arm_int8_vs_fp32_latency": round(arm, 3), "arm_ok": arm <= ARM_RATIO})
    return out


def _one_image(doc: dict) -> str:
    n = next(iter(doc["artifacts"][0]["fidelity"].values()))["images"]
    return f"{100 / n:.2f}"


def render(doc: dict) -> str:
    m = doc["machine"]
    tools = ", ".join(f"{k} {v}" for k, v in sorted(m["tools"].items()) if v)
    out = ["# Benchmarks", "",
           f"Written by `python benchmarks/suite.py{' --quick' if doc['mode'] == 'quick' else ''}` in "
           f"{doc['total_s'] / 60:.1f} min on {m.get('described') or m['cpu']} ({m['arch']}), Python {m['python']}; "
           f"{tools}. Calibration and held-out images: {doc['calibration']}. Every figure below comes from that one "
           "run; `benchmarks/results/suite.json` has them all.", ""]
    out += _pipeline(doc)
    out += ["", "## 2. Artifact speed", "",
            f"Batch 1, runs interleaved across all paths ({doc['settings']['runs']} rounds after "
            f"{doc['settings']['warmup']} warm-up), one preprocessed held-out image; at 2 threads a "
            f"{1000 * doc['settings']['pause_s_at_2_threads']:.0f} ms pause before each run, so one runtime's "
            "spinning worker threads do not take a core from the next. TFLite runs here on x86 (XNNPACK's x86 "
            "kernels): its figures say how the artifacts compare, not what a Raspberry Pi does."]
    for a in doc["artifacts"]:
        out += _speed(a)
    out += [""] + _fidelity(doc["artifacts"])
    out += ["", "## Checks", "",
            f"- x86: our OpenVINO INT8 at most {1 + NOISE:.2f}× NNCF's latency, with a higher logit SQNR and an "
            f"agreement not lower (one image moves the agreement by {_one_image(doc)} points here, inside its "
            f"interval); arm64: our TFLite INT8 at most {ARM_RATIO}× TFLite FP32 latency.", "",
            "| variant | threads | OpenVINO INT8 ours / NNCF latency | logit SQNR ours / NNCF | agreement ours / NNCF "
            "| x86 met | TFLite INT8 / FP32 latency | arm64 met |", "|---|---|---|---|---|---|---|---|"]
    for c in checks(doc["artifacts"]):
        o, n = c["x86_agreement_ours_vs_nncf"]
        oc, nc = c["x86_agreement_ci95_ours_vs_nncf"]
        so, sn = c["x86_sqnr_ours_vs_nncf"]
        out.append(f"| {c['variant']} | {c['threads']} | {c['x86_int8_vs_nncf_latency']:.3f} | {so:.1f} / {sn:.1f} dB "
                   f"| {percent(o, oc)} / {percent(n, nc)} | {'yes' if c['x86_ok'] else 'no'} | "
                   f"{c['arm_int8_vs_fp32_latency']:.3f} | {'yes' if c['arm_ok'] else 'no'} |")
    return "\n".join(out) + "\n"
