"""Per-variant matrix of bench reports: one row per variant, written as JSON, Markdown and a PNG chart of latency
against top-1 (the shape of the EfficientNet-Lite paper's figure), one point per variant and precision."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from edgekit.core.bundle import (
    MANIFEST,
    artifact_bytes,
    bundle_name,
    file_sha256,
    folder_label,
    read,
    write_atomic,
)
from edgekit.core.intervals import percent
from edgekit.core.targets import get_target
from edgekit.core.variants import VARIANTS, resolve_variants
from edgekit.device.verdict import verdict
from edgekit.errors import ChildFailed, DeviceError


def row(report: dict, manifest: dict, bundle: Path, threads: str) -> dict:
    """Key figures of one bench report. Top-1 comes from the build's validation images when they had labels
    (hundreds of images), else from the golden set measured on this device."""
    lat = report["latency"][threads]
    size = artifact_bytes(bundle, manifest, "int8") / 1e6
    val = manifest.get("validation") or {}
    gold = (report.get("golden") or {}).get("vs_pytorch") or {}
    if "top1_fp32" in val:
        top1 = (val, val, f"validation ({val['images']} images)")
    elif "top1_int8" in gold.get("int8", {}):
        top1 = (gold["int8"], report["golden"]["int8_vs_fp32"], f"golden set ({report['golden']['images']} images)")
    else:
        top1 = ({}, val, "no labels")
    labelled, agreed, source = top1
    return {"variant": manifest["variant"]["name"], "size_mb": round(size, 2),
            "fp32_p50_ms": lat["fp32"]["p50_ms"], "int8_p50_ms": lat["int8"]["p50_ms"],
            "speedup": lat["int8_speedup"], **{k: labelled.get(k) for k in (
                "top1_fp32", "top1_fp32_ci95", "top1_int8", "top1_int8_ci95")},
            "agreement": agreed.get("top1_agreement"), "agreement_ci95": agreed.get("top1_agreement_ci95"),
            "int8_gmac_per_s": lat["int8"]["gmac_per_s"], "top1_source": source,
            "random_weights": not manifest["weights"]["pretrained"], "threads": int(threads),
            "measured": report.get("time"), "caveat": val.get("caveat"), "verdict": _short_verdict(report, threads)}


def _short_verdict(report: dict, threads: str) -> str:
    """The verdict in a table cell, at the row's thread count: which artifact to ship here, and why not INT8."""
    v = verdict(report, threads)
    if v["clearly_faster"]:
        return "INT8 pays off"
    return "FP32: INT8 not clearly faster" + (f" ({'; '.join(v['causes'])})" if v["causes"] else "")


def _ci(r: dict, key: str) -> str:
    return percent(r[key], r.get(f"{key}_ci95")) if r.get(key) is not None else "—"


def markdown(rows: list[dict], title: str) -> str:
    lines = [f"# {title}", "", "| variant | INT8 size | FP32 p50 | INT8 p50 | speed-up | top-1 FP32 | top-1 INT8 | "
             "agreement | INT8 GMAC/s | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = r["variant"] + (" (random weights)" if r["random_weights"] else "")
        lines.append(f"| {name} | {r['size_mb']:.2f} MB | {r['fp32_p50_ms']:.2f} ms | {r['int8_p50_ms']:.2f} ms | "
                     f"{r['speedup']:.2f}x | {_ci(r, 'top1_fp32')} | {_ci(r, 'top1_int8')} | "
                     f"{_ci(r, 'agreement')} | {r['int8_gmac_per_s']:.1f} | {r.get('verdict') or '—'} |")
    sources = "; ".join(sorted({f"{r['variant']}: {r['top1_source']}" for r in rows}))
    lines += ["", f"Brackets: 95 % intervals (Wilson). Top-1 from: {sources}"]
    caveats = sorted({r["caveat"] for r in rows if r.get("caveat")})
    lines += [f"Note: the agreement figures were {c}" for c in caveats]
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: Path, title: str) -> bool:
    """Latency (x) against top-1 (y), one point per variant and precision; where no row has a top-1 (no labelled
    images, random weights), latency per variant and precision as bars instead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r["top1_fp32"] is not None and not r["random_weights"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    if not pts:
        xs = range(len(rows))
        for k, (prec, dx) in enumerate((("fp32", -0.2), ("int8", 0.2))):
            ax.bar([x + dx for x in xs], [r[f"{prec}_p50_ms"] for r in rows], width=0.4, label=prec.upper())
        ax.set_xticks(list(xs), [r["variant"] for r in rows])
        ax.set_ylabel("latency, p50 batch 1 (ms)")
        ax.set_title(title + "\n(no top-1: the bundles' images have no labels)", fontsize=9)
        ax.legend()
        fig.tight_layout()
        return save_png(fig, plt, path)
    for prec, marker in (("fp32", "o"), ("int8", "s")):
        xs = [r[f"{prec}_p50_ms"] for r in pts]
        ys = [100 * r[f"top1_{prec}"] for r in pts]
        ax.plot(xs, ys, marker=marker, label=prec.upper())
        for r, x, y in zip(pts, xs, ys):
            ax.annotate(r["variant"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("latency, p50 batch 1 (ms)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_png(fig, plt, path)


def save_png(fig, plt, path: Path) -> bool:
    """The figure as a PNG, written beside `path` and renamed into it: never a half-written chart."""
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)
    return True


def merged(rows: list[dict], path: Path, device: dict) -> tuple[list[dict], list[str]]:
    """`rows` with the rows of an earlier table at `path` for variants not measured now, where that table was
    measured on the same device and runtime at the same thread count; returns the rows and the variants kept."""
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return rows, []
    same = {k: device.get(k) for k in ("cpu", "runtime", "runtime_version")} == \
        {k: (old.get("device") or {}).get(k) for k in ("cpu", "runtime", "runtime_version")}
    now = {r["variant"] for r in rows}
    kept = [r for r in old.get("rows", []) if same and r["variant"] not in now
            and r.get("threads") == (rows[0]["threads"] if rows else None)]
    order = list(VARIANTS)
    return sorted(rows + kept, key=lambda r: order.index(r["variant"])), [r["variant"] for r in kept]


def write(rows: list[dict], out_dir: Path, stem: str, title: str, device: dict | None = None) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    for key, text in (("json", json.dumps({"title": title, "device": device, "rows": rows}, indent=2) + "\n"),
                      ("markdown", markdown(rows, title))):
        write_atomic(paths[key], text.encode())
    chart(rows, paths["png"], title)
    return paths


@dataclass
class Matrix:
    title: str
    rows: list[dict]
    reports: list[dict]
    paths: dict[str, Path]
    kept: list[str]  # variants whose rows come from the earlier table (not measured in this run)


def _child(args: list[str]) -> None:
    """Another edgekit command as a child process (its output is ours); its failure ends the matrix."""
    try:
        r = subprocess.run([sys.executable, "-m", "edgekit.cli", *args])
    except KeyboardInterrupt:  # the child got the Ctrl-C too and said so
        raise ChildFailed(130) from None
    if r.returncode != 0:
        raise ChildFailed(r.returncode)


def _calibrated_otherwise(path: Path, calib: str | None) -> str | None:
    """What the bundle at `path` was calibrated on, if that is not `calib` (None: the embedded default). A bundle
    names a folder by its name alone (`folder 'photos'`: no build-machine paths), so that is what is compared."""
    cal = read(path, verify=False).get("calibration") or {}
    got = cal.get("source") or "default"
    want = calib or "default"
    if Path(want).is_file():  # a recipe file: the one the bundle records, by its digest
        same = (cal.get("recipe") or {}).get("sha256") == file_sha256(Path(want))
    else:  # a folder is recorded by its name only (no build-machine paths): same name, same folder
        same = got in (want, folder_label(want)) if Path(want).is_dir() else got == want
    return None if same else got


def run(variant_name: str, target_name: str, out_dir: Path, build_args: list[str], bench_args: list[str],
        threads: int, random_weights: bool, report_dir: Path, calib: str | None = None) -> Matrix:
    """`edgekit bench --variant`: for each variant, build its bundle into `out_dir` if it is missing or was
    calibrated on other images than `calib` (an `edgekit build` child), measure it in its own process (peak memory
    and threads are the bench's alone), and write the table as JSON, Markdown and a PNG chart, merged with the
    rows of an earlier table for the variants this run did not measure."""
    variants = resolve_variants(variant_name)
    target = get_target(target_name)
    rows, reports = [], []
    for v in variants:
        path = out_dir / bundle_name(v.name, target.name)
        other = _calibrated_otherwise(path, calib) if (path / MANIFEST).is_file() else None
        if other:
            warnings.warn(f"rebuilding {path.name}: it was calibrated on {other}, not {calib or 'default'}")
        elif (path / MANIFEST).is_file():
            print(f"reusing {path} (calibrated on {calib or 'default'}, as asked; delete it to rebuild)",
                  file=sys.stderr)
        if other or not (path / MANIFEST).is_file():
            if not v.has_packaged_weights and not random_weights:
                warnings.warn(f"skipping {v.name}: no weights (build it with --weights, or pass --random-weights "
                              "for latency only)")
                continue
            _child(["build", "--variant", v.name, "--target", target.name, "--out", str(out_dir), *build_args]
                   + (["--random-weights"] if random_weights and not v.has_packaged_weights else []))
        with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as td:
            _child(["bench", str(path), *bench_args, "--json", f"{td}/r.json"])
            report = json.loads(Path(td, "r.json").read_text())
        reports.append(report)
        rows.append(row(report, read(path, verify=False), path, str(threads)))
    if not rows:
        raise DeviceError("no bundle to measure")
    d = reports[0]["device"]
    title = (f"edgekit bench: {target.name} on {d['cpu']} ({d['cores']} cores), {d['runtime']} "
             f"{d['runtime_version']}, {threads} thread(s)")
    stem = f"matrix-{target.name}"
    rows, kept = merged(rows, report_dir / f"{stem}.json", d)
    if kept:
        warnings.warn(f"the table keeps the earlier rows of {', '.join(kept)} (same device, not measured now)")
    return Matrix(title, rows, reports, write(rows, report_dir, stem, title, d), kept)
