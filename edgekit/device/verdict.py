"""The INT8 verdict of a bench run: is INT8 worth it on this device, at what agreement, and if not, why and what to
use instead. Plain data in, plain data out (the bench report's `verdict`)."""
from __future__ import annotations

from edgekit.core.intervals import percent
from edgekit.device.fingerprint import FAST_INT8, fast_int8

# INT8 must take at most this share of the FP32 latency to count as clearly faster: smaller gains drown in run-to-run
# spread and rarely pay for the agreement INT8 costs.
CLEAR_RATIO = 0.8


def agreement(report: dict) -> tuple[float | None, str | None, list[float] | None]:
    """INT8-vs-FP32 top-1 agreement, on what, and its 95 % interval: on the user's images if measured, else on the
    bundle's golden set."""
    if report.get("images"):
        im = report["images"]
        return im["top1_agreement"], f"{im['images']} images", im.get("top1_agreement_ci95")
    g = report.get("golden")
    if g:
        return (g["int8_vs_fp32"]["top1_agreement"], f"the {g['images']}-input golden set",
                g["int8_vs_fp32"].get("top1_agreement_ci95"))
    return None, None, None


def causes(fp: dict | None, warnings: list[dict]) -> list[str]:
    out = []
    if fp and fast_int8(fp) is False:
        family = fp["family"]
        names = "/".join(FAST_INT8[family])
        out.append(f"the {fp['cpu']} has no {'dot-product' if family == 'arm' else 'VNNI'} instructions ({names}), "
                   "so int8 kernels gain little over float ones")
    kinds = {w["kind"] for w in warnings}
    if kinds & {"throttled", "heat"}:
        out.append("the board throttled or overheated during the run")
    if "governor" in kinds:
        out.append("the cpufreq governor lets the clock scale, so the figures may be low")
    return out


def verdict(report: dict, threads: str | int | None = None) -> dict:
    """At `threads`, by default the largest thread count measured (what an application on all cores sees)."""
    threads = str(threads) if threads is not None else max(report["latency"], key=int)
    lat = report["latency"][threads]
    ratio = lat["int8"]["p50_ms"] / lat["fp32"]["p50_ms"]
    agree, over, ci = agreement(report)
    fp32_file = report.get("bundle", {}).get("fp32_artifact", "the FP32 artifact")
    faster = ratio <= CLEAR_RATIO
    why = [] if faster else causes(report.get("fingerprint"), report.get("run_warnings") or [])
    cost = f" at {percent(agree, ci)} top-1 agreement with FP32 ({over})" if agree is not None else ""
    line = f"INT8 is {ratio:.2f}x the FP32 latency here ({threads} thread{'s' if threads != '1' else ''}){cost}"
    if faster:
        line += ": INT8 pays off on this device"
        advice = None
    else:
        line += ": not clearly faster"
        line += f"; likely cause: {'; '.join(why)}" if why else \
            "; no cause in the fingerprint (the runtime may not have int8 kernels for every layer here)"
        advice = f"use the bundle's FP32 artifact ({fp32_file}: edgekit.load(BUNDLE, precision='fp32')) instead"
        line += f"; {advice}"
    return {"threads": int(threads), "int8_over_fp32": ratio, "speedup": 1 / ratio, "clearly_faster": faster,
            "agreement": agree, "agreement_ci95": ci, "agreement_on": over, "causes": why, "advice": advice,
            "line": f"verdict: {line}"}
