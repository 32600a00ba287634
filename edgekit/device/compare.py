"""`edgekit report`: bench runs compared across devices, one row per bundle and device (its latest run), with the
INT8 speed-up, its agreement and whether heat or clock scaling spoiled the run; `--plot` draws them."""
from __future__ import annotations

from pathlib import Path

from edgekit.device.fingerprint import peak_c
from edgekit.device.matrix import save_png
from edgekit.device.verdict import agreement, verdict
from edgekit.errors import RuntimeMissing


def device_name(report: dict) -> str:
    fp = report.get("fingerprint") or {}
    cpu = fp.get("cpu") or report["device"].get("cpu") or report["device"].get("arch")
    board = fp.get("board")
    return f"{board} ({cpu})" if board and cpu not in board else (board or cpu)


def rows(runs: list[dict]) -> list[dict]:
    """Latest run per (bundle, device, runtime), in order of first appearance; `runs` counts them all."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        key = (r["bundle"]["name"], device_name(r), r["device"].get("runtime_package") or r["device"]["runtime"])
        groups.setdefault(key, []).append(r)
    return [{**summary(reports[-1]), "runs": len(reports)} for reports in groups.values()]


def summary(report: dict) -> dict:
    """One run's key figures at its verdict's thread count: latency, speed-up, agreement, heat, throttling."""
    v = report.get("verdict") or verdict(report)  # runs recorded before the verdict existed
    lat = report["latency"][str(v["threads"])]
    th = report.get("thermal") or {}
    flags = (th.get("after") or {}).get("throttled")
    agree, _, agree_ci = agreement(report)
    return {"bundle": report["bundle"]["name"], "device": device_name(report),
            "runtime": report["device"].get("runtime_package") or report["device"]["runtime"],
            "threads": v["threads"], "int8_p50_ms": lat["int8"]["p50_ms"], "fp32_p50_ms": lat["fp32"]["p50_ms"],
            "speedup": v["speedup"], "agreement": agree, "agreement_ci95": agree_ci,
            "int8_pays_off": v["clearly_faster"],
            "max_temperature_c": peak_c(th), "throttled": flags["raw"] if flags else None,
            "comparable": report.get("comparable", True), "time": report["time"]}


def plot(table: list[dict], path: Path) -> Path:
    """p50 latency per device and precision, grouped by bundle; written atomically."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeMissing("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['bundle']}\n{r['device'][:52]}" + ("" if r["comparable"] else " (!)") for r in table]
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.55 * len(table)), dpi=120)
    ys = range(len(table))
    for prec, dy in (("fp32", 0.2), ("int8", -0.2)):
        ax.barh([y + dy for y in ys], [r[f"{prec}_p50_ms"] for r in table], height=0.4, label=prec.upper())
    for y, r in zip(ys, table):
        ax.annotate(f"{r['speedup']:.2f}x", (r["int8_p50_ms"], y - 0.2), xytext=(3, -3),
                    textcoords="offset points", fontsize=7)
    ax.set_yticks(list(ys), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("latency, p50 batch 1 (ms)")
    ax.set_title("edgekit bench: INT8 and FP32 per device" + ("\n(!) not comparable: throttling, heat or clock "
                 "scaling during the run" if not all(r["comparable"] for r in table) else ""), fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_png(fig, plt, Path(path))
    return Path(path)
