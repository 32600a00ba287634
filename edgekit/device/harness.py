"""`edgekit bench`: latency and drift of a bundle, measured on the device that runs it.

Device side: numpy, Pillow and the bundle's runtime only (never torch or onnx). The input contract comes from the
manifest; the runtime from the manifest's target unless overridden.
"""
from __future__ import annotations

import datetime
import resource
import time
from pathlib import Path
from typing import Callable

import numpy as np

from edgekit.core import bundle as manifest
from edgekit.core import contract
from edgekit.core.bundle import GOLDEN_FILE
from edgekit.core.classes import ClassIndex
from edgekit.device import fingerprint, imagesets, metrics, preprocess, runtimes
from edgekit.device.system import device_info
from edgekit.device.verdict import verdict
from edgekit.errors import BenchError, ManifestError
from edgekit.progress import Progress, no_progress


def summarize(times_s: list[float]) -> dict:
    ms = np.asarray(times_s) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "std_ms": float(ms.std()),
            "min_ms": float(ms.min()), "runs": int(len(ms))}


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return round(kb / 1024, 1)


def latency(runtime: str, bundle: Path, artifacts: dict, x: dict[str, np.ndarray], threads: int, runs: int,
            warmup: int, tick: Callable[[int], None], content: dict[str, bytes] | None = None) -> dict:
    """Both precisions at one thread count, runs interleaved. Time to first inference = load/compile + first
    invoke. `content`: the artifacts' bytes, verified by the caller (manifest.read_verified): what runs."""
    runners, first = {}, {}
    for p in ("int8", "fp32"):
        t = time.perf_counter()
        runners[p] = runtimes.open_runner(runtime, bundle / artifacts[p], threads=threads,
                                          fp32_reference=p == "fp32", content=content)
        runners[p](x[p])
        first[p] = time.perf_counter() - t
    r = interleaved(runners, x, runs, warmup, tick)
    return {p: {**r[p], "first_inference_ms": first[p] * 1e3} for p in runners}


def interleaved(runners: dict[str, Callable], x: dict[str, np.ndarray], runs: int, warmup: int,
                tick: Callable[[int], None], pause_s: float = 0.0) -> dict:
    """Each runner on its input, runs interleaved (a, b, a, b, ...) so drift in machine load hits all alike.
    pause_s before each timed run lets the previous runtime's worker threads stop spinning (onnxruntime's and
    OpenMP's spin after each run, and on 2 cores they take a core from whatever runs next)."""
    for _ in range(warmup):
        for p in runners:
            runners[p](x[p])
    times: dict[str, list[float]] = {p: [] for p in runners}
    for _ in range(runs):
        for p in runners:
            if pause_s:
                time.sleep(pause_s)
            t = time.perf_counter()
            runners[p](x[p])
            times[p].append(time.perf_counter() - t)
        tick(1)
    return {p: summarize(times[p]) for p in runners}


def _logits(bundle: Path, m: dict, runtime: str, pixels: np.ndarray, content: dict[str, bytes]
            ) -> dict[str, np.ndarray]:
    contracts = {p: contract.from_manifest(m, p) for p in ("int8", "fp32")}
    return runtimes.artifact_logits(runtime, bundle, m["artifacts"], pixels, contracts, content=content)


def verified_content(bundle: Path, m: dict) -> dict[str, bytes]:
    """The bytes bench runs and compares, each file read once and checked against the manifest: both artifacts (an
    OpenVINO IR is two files) and the golden set where the manifest lists one. Everything after uses these bytes,
    never the files again, so a file swapped after the check is never measured."""
    names = [f for p in ("int8", "fp32") for f in runtimes.artifact_files(bundle / m["artifacts"][p])]
    return manifest.read_verified(bundle, m, names + ([GOLDEN_FILE] if GOLDEN_FILE in m["files"] else []))


def _golden(bundle: Path, data: bytes) -> dict:
    """The golden set's arrays from its verified bytes; a file that is not one (its checksum passed: an edited
    manifest) is one line."""
    import io
    import zipfile

    try:
        z = np.load(io.BytesIO(data))  # no pickles: object arrays raise ValueError
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with z:
            g = {k: z[k] for k in ("pixels", "torch_logits", "labels")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        raise ManifestError(f"{bundle / GOLDEN_FILE} is not a golden set (pixels, logits, labels); rebuild or pull "
                            "the bundle again") from None
    if g["pixels"].ndim != 4 or len(g["torch_logits"]) != len(g["pixels"]):
        raise ManifestError(f"{bundle / GOLDEN_FILE} holds inconsistent arrays; rebuild or pull the bundle again")
    return g


def golden_drift(bundle: Path, m: dict, runtime: str, content: dict[str, bytes], g: dict | None,
                 limit: int | None = None) -> dict | None:
    """INT8 and FP32 artifacts against the PyTorch FP32 logits recorded at build time, on the carried inputs `g`
    (_golden's arrays; the first `limit` of them: slow or emulated devices). `content`: verified_content's bytes."""
    if g is None:
        return None
    if limit:
        g = {k: v[:limit] for k, v in g.items()}
    out = _logits(bundle, m, runtime, g["pixels"], content)
    return {"images": int(len(g["pixels"])),
            "vs_pytorch": {p: metrics.drift(g["torch_logits"], out[p], g["labels"]) for p in out},
            "int8_vs_fp32": metrics.drift(out["fp32"], out["int8"], g["labels"])}


def image_samples(m: dict, images: Path, limit: int | None) -> list[imagesets.Sample]:
    """The first `limit` images of a folder, labelled by the bundle's class index (folder names matched to the
    class names, WordNet ids, labels.csv); BenchError if there are none."""
    samples = imagesets.directory_samples(images, ClassIndex.from_manifest(m))
    if not samples:
        raise BenchError(f"no images (jpg/png/webp/bmp) found under {images}")
    return samples[:limit] if limit else samples


def image_drift(bundle: Path, m: dict, runtime: str, images: Path, samples: list[imagesets.Sample],
                content: dict[str, bytes]) -> dict:
    """INT8 vs the bundle's FP32 artifact on `samples`, the images of the folder `images`; the artifacts run from
    `content`, verified_content's bytes."""
    t = time.perf_counter()
    loaded = imagesets.load_pixels(samples, m["preprocessing"])
    prep_s = time.perf_counter() - t
    if len(loaded.pixels) == 0:
        raise BenchError(f"none of the {len(samples)} images under {images} could be read")
    out = _logits(bundle, m, runtime, loaded.pixels, content)
    labels = loaded.labels if (loaded.labels >= 0).any() else None
    return {"source": str(images), "preprocess_ms_per_image": 1e3 * prep_s / len(samples),
            "skipped_unreadable": loaded.skipped, **metrics.drift(out["fp32"], out["int8"], labels),
            **metrics.per_class(out["fp32"], out["int8"], labels, m["class_names"])}


def _device(runtime: str, fp: dict) -> dict:
    """The device, with the CPU as the fingerprint names it (an Arm part, not a SoC's "Hardware" line)."""
    d = device_info(runtime)
    return {**d, "cpu": fp["cpu"], "cores": fp["cores"] or d["cores"]}


def run(bundle: Path, threads: list[int], runs: int, warmup: int, runtime: str = "auto",
        images: Path | None = None, limit: int | None = None, golden_limit: int | None = None,
        progress: Progress = no_progress) -> dict:
    bundle = Path(bundle)
    m = manifest.read(bundle)  # verifies every file's sha256
    rt = m["target"]["runtime"] if runtime == "auto" else runtime
    if rt not in runtimes.RUNTIMES:
        raise BenchError(f"unknown runtime '{rt}': choose auto or one of {', '.join(runtimes.RUNTIMES)}")
    for p in ("int8", "fp32"):  # refused now, not after the latency runs
        runtimes.check_format(rt, bundle / m["artifacts"][p])
    samples = image_samples(m, Path(images), limit) if images is not None else None  # refused before timing
    content = verified_content(bundle, m)  # what the latency runs, the drift and the verdict all use
    gold = _golden(bundle, content[GOLDEN_FILE]) if GOLDEN_FILE in content else None
    if gold is not None:
        px = gold["pixels"][:1]
    else:
        crop = m["preprocessing"]["crop"]
        px = np.full((1, crop, crop, 3), 128, np.uint8)
    x = {p: preprocess.to_input(px, contract.from_manifest(m, p)) for p in ("int8", "fp32")}
    fp, watch = fingerprint.fingerprint(), fingerprint.Watch()
    lat = {}
    for t in threads:
        advance = progress(f"latency: {t} thread(s), int8 and fp32 interleaved", runs, "run")

        def tick(n: int) -> None:
            advance(n)
            watch.sample()

        lat[str(t)] = latency(rt, bundle, m["artifacts"], x, t, runs, warmup, tick, content)
        for p in lat[str(t)].values():
            p["gmac_per_s"] = m["variant"]["macs"] / (p["p50_ms"] / 1e3) / 1e9
        lat[str(t)]["int8_speedup"] = lat[str(t)]["fp32"]["p50_ms"] / lat[str(t)]["int8"]["p50_ms"]
    before, after = watch.before, watch.done()  # the latency runs are what heat and throttling spoil
    progress("drift: golden set", None)
    golden = golden_drift(bundle, m, rt, content, gold, golden_limit)
    run_warnings = fingerprint.run_warnings(fp, before, after)
    report = {
        "kind": "edgekit-bench",
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bundle": {"name": m["name"], "path": str(bundle.resolve()), "variant": m["variant"]["name"],
                   "target": m["target"]["name"], "manifest_sha256": manifest.file_sha256(bundle / manifest.MANIFEST),
                   "fp32_artifact": m["artifacts"]["fp32"]},
        # the CPU as the fingerprint names it (an Arm part, not the SoC's "Hardware" line); cores counted alike
        "device": _device(rt, fp),
        "fingerprint": fp,
        "thermal": {"before": before, "after": after},
        # runs with these are not comparable with others (clock scaling, throttling, heat)
        "run_warnings": run_warnings,
        "comparable": not run_warnings,
        "settings": {"threads": threads, "runs": runs, "warmup": warmup, "batch": 1},
        "latency": lat,
        "golden": golden,
        "build_time_golden": (m.get("golden") or {}).get("build_time_vs_pytorch"),
        # the golden set is the first validation images: what misleads about those misleads about it
        "caveat": (m.get("validation") or {}).get("caveat"),
        "warnings": m.get("warnings") or [],
    }
    if images is not None:
        progress(f"drift: images in {images}", None)
        report["images"] = image_drift(bundle, m, rt, Path(images), samples, content)
    report["peak_rss_mb"] = _peak_rss_mb()
    report["verdict"] = verdict(report)
    return report
