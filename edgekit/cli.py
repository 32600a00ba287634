"""The `edgekit` command line."""
from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import click

from . import __version__
from .variants import VARIANTS, UnknownVariant, resolve_variants


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _warn_line(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {message}", err=True)


@click.group()
@click.version_option(__version__, prog_name="edgekit")
def main() -> None:
    """EfficientNet-Lite from PyTorch to validated INT8 artifacts for edge devices."""
    warnings.showwarning = _warn_line


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def variants(as_json: bool) -> None:
    """The variant table, with the MACs edgekit computes beside the card's figures."""
    from .arch import count_macs

    rows = [{**v.to_dict(), "macs": count_macs(v)} for v in VARIANTS.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    head = (f"{'variant':8} {'input':>5} {'crop':>6} {'interp':9} {'params (card)':>14} {'FLOPs (card)':>14} "
            f"{'MACs (ours)':>14} {'top-1':>6} {'top-5':>6}  weights")
    click.echo(head)
    for r in rows:
        w = r["weights"]["package"] or f"--weights {r['weights']['upstream_file']}"
        click.echo(f"{r['name']:8} {r['input_size']:>5} {r['crop_pct']:>6.3f} {r['interpolation']:9} "
                   f"{r['card_params']:>14,} {r['card_flops']:>14,} {r['macs']:>14,} {r['card_top1']:>6.2f} "
                   f"{r['card_top5']:>6.2f}  {w}")


class _Bars:
    """One tqdm bar per stage step, on stderr; disabled when stderr is not a terminal and in --json mode."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None

    def __call__(self, label: str, total: int | None):
        from tqdm import tqdm

        self.close()
        if self.quiet:
            return lambda n: None
        if total is None:
            click.echo(f"  {label} ...", err=True)
            return lambda n: None
        self.bar = tqdm(total=total, desc=f"  {label}", unit="img", file=sys.stderr, leave=False,
                        dynamic_ncols=True)
        return self.bar.update

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _summary(path: Path, m: dict) -> str:
    v = m["validation"]
    lines = [f"bundle: {path}"]
    for name, s in m["timings"].items():
        if isinstance(s, dict):
            lines.append(f"  {name:14} {s['seconds']:7.2f} s{'  (cached)' if s['cached'] else ''}")
    g = m["export"].get("graph")
    head = f"onnx: opset {g['opset']}, {g['nodes']} nodes" if g else f"float .tflite ({m['export'].get('converter')})"
    lines.append(f"  {head}, parity with PyTorch max|diff| {m['export']['parity']['max_abs_diff']:.1e}")
    checks = m.get("backend_checks") or {}
    if "integer_only" in checks:
        ops = ", ".join(f"{k} {n}" for k, n in checks["ops"].items())
        lines.append(f"  int8 .tflite: {'integer-only' if checks['integer_only'] else 'FLOAT OPS: ' + ', '.join(checks['float_ops'])}"
                     f" ({ops})")
    if v.get("images"):
        line = (f"  validation ({v['images']} held-out images, {v['runtime']}): top-1 agreement "
                f"{100 * v['top1_agreement']:.2f} %, logit SQNR {v['logit_sqnr_db']:.1f} dB")
        if "top1_fp32" in v:
            line += (f", top-1 FP32 {100 * v['top1_fp32']:.2f} % -> INT8 {100 * v['top1_int8']:.2f} % "
                     f"(drop {v['top1_drop_points']:.2f} points)")
        lines.append(line)
    mixed = m.get("mixed_precision")
    ties = (mixed or {}).get("near_ties")
    if ties:
        allowed = ties.get("allowed_disagreements")
        lines.append(f"  near ties: {ties['expected_disagreements']:.1f} disagreements expected at the INT8 noise"
                     + (f", {allowed} allowed" if allowed is not None else "")
                     + f"; {ties['images_within_2_sd']} of {ties['images']} images within 2 sd of a tie")
    if mixed and not mixed["layers"]:
        lines.append(f"  budget: met in plain int8 with --method {m['calibration']['method']} "
                     f"({len(mixed['search'])} models tried)")
    elif mixed:
        lat = mixed["latency"]["threads_1"]
        lines.append(f"  budget: {len(mixed['layers'])} layer(s) in {mixed['raised_to']} "
                     f"({', '.join(e['layer'] for e in mixed['layers'])}); 1-thread latency "
                     f"{lat['int8_p50_ms']:.2f} -> {lat['mixed_p50_ms']:.2f} ms (x{lat['ratio']:.2f})")
    if not m["weights"]["pretrained"]:
        lines.append("  WARNING: " + m["weights"]["warning"])
    return "\n".join(lines)


_MODEL_OPTIONS = [
    click.option("--variant", "variant_name", default="lite0", show_default=True,
                 help=f"One of {', '.join(VARIANTS)} or 'all'."),
    click.option("--target", "target_name", default="x86", show_default=True, help="Target name or alias."),
    click.option("--calib", default=None, help="Calibration images: a directory (recursive) or a recipe name. "
                                                "[default: the embedded 'default' recipe]"),
    click.option("--num-calib", default=200, show_default=True, help="Number of calibration images."),
    click.option("--num-val", default=1000, show_default=True, help="Most validation images to use."),
    click.option("--method", default=None, type=click.Choice(["minmax", "percentile", "entropy"]),
                 help="Activation range calibration [default: the target's calibration_method, targets/*.toml]."),
    click.option("--rounding", default="gptq", show_default=True, type=click.Choice(["gptq", "nearest"]),
                 help="Weight rounding: error-compensating for each layer's inputs, or nearest."),
    click.option("--val", "val_dir", default=None, help="Validation images (default: held out from --calib)."),
    click.option("--weights", "weights_file", default=None, type=click.Path(dir_okay=False),
                 help="Checkpoint (PyPI lukemelas-style or timm format)."),
    click.option("--random-weights", is_flag=True, help="Allow building a variant with no weights (random init)."),
    click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
                 help="Stage cache [default: $EDGEKIT_CACHE_DIR or ~/.cache/edgekit]."),
]


def _model_options(f):
    """The options that say which model to quantize, how and on what images (build and analyze alike)."""
    for opt in reversed(_MODEL_OPTIONS):
        f = opt(f)
    return f


def _errors() -> tuple[type, ...]:
    """The build side's user-facing errors: each becomes one line and exit code 2."""
    from . import budget, calibration_sets, pipeline, quantize
    from .backends import BackendError
    from .export import ExportError
    from .imagesets import ImageError
    from .litert_export import ConvertError
    from .tflite_graph import ModelError
    from .tflite_quantize import QuantizeError as TFLiteQuantizeError
    from .weights import WeightsError

    return (WeightsError, calibration_sets.CalibrationError, pipeline.BuildError, ExportError, quantize.QuantizeError,
            BackendError, ImageError, ConvertError, ModelError, TFLiteQuantizeError, budget.BudgetError,
            FileNotFoundError, NotADirectoryError)


@main.command()
@_model_options
@click.option("--max-drop", default=None, type=float,
              help="Accuracy budget: most top-1 points INT8 may lose against FP32 on the validation images. The "
                   "build tries the other range method, then layers in float (x86, onnx), most sensitive first, until "
                   "it holds, or fails saying which layers it tried.")
@click.option("--min-agreement", default=None, type=float,
              help="Accuracy budget: least top-1 agreement with FP32, in percent (e.g. 99.3).")
@click.option("--allow-float", is_flag=True, help="arm64: ship ops the integer path cannot handle as float "
                                                   "(the manifest lists them) instead of failing.")
@click.option("--out", "out_dir", default="dist", show_default=True, type=click.Path(file_okay=False),
              help="Where bundles are written.")
@click.option("--no-cache", is_flag=True, help="Rebuild every stage (cache neither read nor kept).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest(s) as JSON on stdout.")
def build(variant_name, target_name, calib, num_calib, num_val, method, rounding, val_dir, weights_file,
          random_weights, cache_dir, max_drop, min_agreement, allow_float, out_dir, no_cache, as_json) -> None:
    """Build validated INT8 bundle(s): export, quantize, convert for the target, validate, bundle."""
    from .target_table import UnknownTarget, get_target

    try:
        variants_ = resolve_variants(variant_name)
        target = get_target(target_name)
    except (UnknownVariant, UnknownTarget) as e:
        _fail(str(e))
    if weights_file and len(variants_) > 1:
        _fail("--weights names one checkpoint: use it with a single --variant, not 'all'")

    # Build-side imports only now, so `edgekit variants` and errors above stay fast.
    from . import cache as cache_mod
    from . import calibration_sets, pipeline, quantize
    from .budget import Budget
    from .classes import imagenet1k
    from .weights import resolve_weights

    errors = _errors()
    classes = imagenet1k()
    tmp_cache = tempfile.TemporaryDirectory(prefix="edgekit-nocache-") if no_cache else None
    store = cache_mod.Cache(Path(tmp_cache.name) if tmp_cache else (Path(cache_dir) if cache_dir else None))
    bars = _Bars(quiet=as_json or not sys.stderr.isatty())
    results = []
    try:
        budget = None if max_drop is None and min_agreement is None else \
            Budget(max_drop, None if min_agreement is None else min_agreement / 100)
        selection = calibration_sets.select(calib, num_calib, num_val, val_dir, classes.index_of_wnid)
        for v in variants_:
            weights = resolve_weights(v, weights_file, random_weights)
            click.echo(f"edgekit build {v.name} -> {target.name} ({target.format}); weights: {weights.origin}",
                       err=True)
            quant = quantize.QuantOptions(method=method or target.calibration_method, weight_rounding=rounding)
            req = pipeline.BuildRequest(v, target, weights, selection, quant, Path(out_dir), allow_float=allow_float,
                                        budget=budget)
            t = time.perf_counter()
            path, m = pipeline.build(req, store, list(classes.names), list(classes.wnids), bars)
            bars.close()
            click.echo(_summary(path, m) + f"\n  total {time.perf_counter() - t:.1f} s", err=True)
            results.append(m)
    except errors as e:
        bars.close()
        _fail(str(e))
    finally:
        if tmp_cache:
            tmp_cache.cleanup()
    if as_json:
        click.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2))


@main.command()
@_model_options
@click.option("--images", default=64, show_default=True,
              help="Calibration images each one-layer-raised model is run on (arm64 simulates integer arithmetic "
                   "in torch: 50 s for lite0 at 32 images on a 2-core EPYC).")
@click.option("--top", default=20, show_default=True, help="Layers to print (the JSON has all).")
@click.option("--out", "out_dir", default="dist", show_default=True, type=click.Path(file_okay=False),
              help="Where the JSON report <variant>-<target>.sensitivity.json is written.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def analyze(variant_name, target_name, calib, num_calib, num_val, method, rounding, val_dir, weights_file,
            random_weights, cache_dir, images, top, out_dir, as_json) -> None:
    """Per-layer sensitivity: each int8 layer raised on its own (in float on x86/onnx; its output tensor in int16,
    a16w8, on arm64), its effect on logit SQNR and agreement, sorted; and the activation ranges calibration chose."""
    from .target_table import UnknownTarget, get_target

    try:
        variants_ = resolve_variants(variant_name)
        target = get_target(target_name)
    except (UnknownVariant, UnknownTarget) as e:
        _fail(str(e))
    if len(variants_) != 1:
        _fail("analyze takes one --variant, not 'all'")
    if images < 1:
        _fail("--images must be at least 1")
    from . import cache as cache_mod
    from . import calibration_sets, pipeline, quantize
    from .classes import imagenet1k
    from .weights import resolve_weights

    v = variants_[0]
    bars = _Bars(quiet=as_json or not sys.stderr.isatty())
    try:
        selection = calibration_sets.select(calib, num_calib, num_val, val_dir, imagenet1k().index_of_wnid)
        weights = resolve_weights(v, weights_file, random_weights)
        quant = quantize.QuantOptions(method=method or target.calibration_method, weight_rounding=rounding)
        req = pipeline.BuildRequest(v, target, weights, selection, quant, Path(out_dir))
        report = pipeline.analyze(req, cache_mod.Cache(Path(cache_dir) if cache_dir else None), images, bars)
        path = pipeline.write_json(Path(out_dir) / f"{v.name}-{target.name}.sensitivity.json", report)
    except _errors() as e:
        bars.close()
        _fail(str(e))
    bars.close()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(_analysis_table(report, top))
    click.echo(f"report: {path}")


def _analysis_table(r: dict, top: int) -> str:
    b = r["all_int8"]
    lines = [f"{r['variant']} on {r['target']}: all int8 logit SQNR {b['logit_sqnr_db']:.2f} dB, agreement "
             f"{100 * b['top1_agreement']:.2f} % ({r['images']} {r['image_source']}, {r['runtime']})",
             f"  ({r['method']})",
             f"{'#':>3} {'layer':48} {'kind':16} {'MACs':>6} {'SQNR dB':>8} {'gain':>6} {'agree %':>8}"]
    for i, e in enumerate(r["layers"][:top], 1):
        lines.append(f"{i:>3} {e['layer'][-48:]:48} {e['kind']:16} {100 * e['macs_share']:5.1f}% "
                     f"{e['logit_sqnr_db']:8.2f} {e['gain_db']:+6.2f} {100 * e['top1_agreement']:8.2f}")
    ranges = r["activation_ranges"]
    widest = sorted(ranges, key=lambda a: -(a["max"] - a["min"]))[:3]
    lines.append(f"{len(ranges)} activation grids; widest: " +
                 ", ".join(f"{a['tensor']} [{a['min']:.2f}, {a['max']:.2f}]" for a in widest))
    return "\n".join(lines)


def _threads(value: str) -> list[int]:
    try:
        out = [int(t) for t in value.split(",") if t.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        _fail(f"--threads {value!r}: give thread counts such as 1 or 1,2,4")
    return out


def _bench_table(r: dict) -> str:
    lines = [f"bench {r['bundle']['name']} on {r['device']['cpu']} ({r['device']['arch']}, "
             f"{r['device']['cores']} cores), {r['device']['runtime']} {r['device']['runtime_version']}",
             f"  {'threads':>7} {'precision':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'min ms':>8} "
             f"{'first ms':>9} {'GMAC/s':>7}"]
    for t, per in r["latency"].items():
        for p in ("int8", "fp32"):
            s = per[p]
            lines.append(f"  {t:>7} {p:>9} {s['p50_ms']:8.2f} {s['p90_ms']:8.2f} {s['p99_ms']:8.2f} "
                         f"{s['min_ms']:8.2f} {s['first_inference_ms']:9.1f} {s['gmac_per_s']:7.1f}")
        lines.append(f"  {t:>7} int8 speed-up over fp32 (p50): {per['int8_speedup']:.2f}x")
    g = r.get("golden")
    if g:
        vp = g["vs_pytorch"]
        lines.append(f"  golden set ({g['images']} inputs): top-1 agreement with PyTorch FP32: INT8 "
                     f"{100 * vp['int8']['top1_agreement']:.2f} %, FP32 artifact {100 * vp['fp32']['top1_agreement']:.2f} %;"
                     f" INT8 vs FP32 artifact {100 * g['int8_vs_fp32']['top1_agreement']:.2f} %, "
                     f"SQNR {g['int8_vs_fp32']['logit_sqnr_db']:.1f} dB")
    im = r.get("images")
    if im:
        line = (f"  images ({im['images']} from {im['source']}): INT8 vs FP32 agreement "
                f"{100 * im['top1_agreement']:.2f} %, preprocessing {im['preprocess_ms_per_image']:.1f} ms/image")
        if "top1_fp32" in im:
            line += (f", top-1 FP32 {100 * im['top1_fp32']:.2f} % -> INT8 {100 * im['top1_int8']:.2f} %, "
                     f"top-5 {100 * im['top5_fp32']:.2f} % -> {100 * im['top5_int8']:.2f} %")
        lines.append(line)
    lines.append(f"  peak resident memory {r['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


@main.command()
@click.argument("bundle", type=click.Path(file_okay=False), required=False)
@click.option("--images", type=click.Path(file_okay=False), default=None,
              help="Also measure drift on these images (labels from WordNet ids, folders or labels.csv).")
@click.option("--limit", type=int, default=None, help="Use at most this many of --images.")
@click.option("--golden-limit", type=int, default=None,
              help="Use only the first N golden inputs (slow or emulated boards) [default: all].")
@click.option("--threads", default="1,2", show_default=True, help="Thread counts to time, comma-separated.")
@click.option("--runs", default=50, show_default=True, help="Timed runs per precision and thread count.")
@click.option("--warmup", default=5, show_default=True, help="Untimed runs first.")
@click.option("--runtime", default="auto", show_default=True,
              help="auto (the bundle's runtime), openvino or onnxruntime.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), default=None, help="Write the report here.")
@click.option("--history", type=click.Path(dir_okay=False), default=None,
              help="History file to append to [default: $EDGEKIT_HISTORY or ~/.local/share/edgekit/history.jsonl].")
@click.option("--device", default=None, help="Run on a remote board: ssh://[user@]host[:port] (--images is then a "
                                              "directory on the board).")
@click.option("--ssh-config", type=click.Path(dir_okay=False), default=None,
              help="ssh config file for --device [default: ssh's own, ~/.ssh/config].")
@click.option("--remote-edgekit", default="edgekit", show_default=True,
              help="The edgekit command on the board.")
@click.option("--remote-dir", default=".cache/edgekit/remote-bundles", show_default=True,
              help="Where bundles are copied on the board (relative: under the remote home).")
@click.option("--variant", "variant_name", default=None,
              help="Matrix mode instead of BUNDLE: lite0..lite4 or 'all'; bundles missing from --out are built.")
@click.option("--target", "target_name", default="x86", show_default=True, help="Matrix mode: target.")
@click.option("--out", "out_dir", default="dist", show_default=True, type=click.Path(file_okay=False),
              help="Matrix mode: where bundles are (and are built).")
@click.option("--calib", default=None, help="Matrix mode: calibration source for bundles it builds.")
@click.option("--num-calib", default=200, show_default=True, help="Matrix mode: calibration images for builds.")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False), help="Matrix mode: stage cache.")
@click.option("--random-weights", is_flag=True,
              help="Matrix mode: include variants with no weights (latency only; their top-1 is meaningless).")
@click.option("--report-dir", default=None, type=click.Path(file_okay=False),
              help="Matrix mode: where the table goes as JSON, Markdown and PNG [default: OUT/bench].")
def bench(bundle, images, limit, golden_limit, threads, runs, warmup, runtime, json_file, history, device,
          ssh_config,
          remote_edgekit, remote_dir, variant_name, target_name, out_dir, calib, num_calib, cache_dir,
          random_weights, report_dir) -> None:
    """Measure a bundle on this device (or a remote board): latency per thread count, drift against FP32 and
    PyTorch. With --variant instead of BUNDLE: a per-variant table for one target."""
    thread_list = _threads(threads)
    if runs < 1 or warmup < 0:
        _fail("--runs must be at least 1 and --warmup at least 0")
    if bool(bundle) == bool(variant_name):
        _fail("give either a BUNDLE directory or --variant (matrix mode), not both or neither")
    one = dict(images=images, limit=limit, golden_limit=golden_limit, threads=threads, thread_list=thread_list,
               runs=runs, warmup=warmup,
               runtime=runtime, history=history, device=device, ssh_config=ssh_config,
               remote_edgekit=remote_edgekit, remote_dir=remote_dir)
    if bundle:
        report = _bench_one(Path(bundle), **one)
        if json_file:
            Path(json_file).write_text(json.dumps(report, indent=2, default=str) + "\n")
        click.echo(_bench_table(report))
        return

    from . import matrix
    from .manifest import read
    from .target_table import UnknownTarget, get_target

    try:
        variants_ = resolve_variants(variant_name)
        target = get_target(target_name)
    except (UnknownVariant, UnknownTarget) as e:
        _fail(str(e))
    rows, reports = [], []
    for v in variants_:
        path = Path(out_dir) / f"{v.name}-{target.name}-int8"
        if not (path / "manifest.json").is_file():
            if not v.has_packaged_weights and not random_weights:
                click.echo(f"warning: skipping {v.name}: no weights (build it with --weights, or pass "
                           "--random-weights for latency only)", err=True)
                continue
            _child(["build", "--variant", v.name, "--target", target.name, "--out", out_dir,
                    "--num-calib", str(num_calib)] + (["--calib", calib] if calib else [])
                   + (["--cache-dir", cache_dir] if cache_dir else [])
                   + (["--random-weights"] if random_weights and not v.has_packaged_weights else []))
        # each measurement in its own process: peak memory and threads are the bench's alone, not the build's
        with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as td:
            _child(["bench", str(path), "--threads", threads, "--runs", str(runs), "--warmup", str(warmup),
                    "--runtime", runtime, "--json", f"{td}/r.json"]
                   + (["--history", history] if history else [])
                   + (["--images", images] if images else []) + (["--limit", str(limit)] if limit else [])
                   + (["--golden-limit", str(golden_limit)] if golden_limit else [])
                   + (["--device", device, "--remote-edgekit", remote_edgekit, "--remote-dir", remote_dir]
                      if device else []) + (["--ssh-config", ssh_config] if ssh_config else []))
            report = json.loads(Path(td, "r.json").read_text())
        reports.append(report)
        rows.append(matrix.row(report, read(path, verify=False), path, str(thread_list[0])))
    if not rows:
        _fail("no bundle to measure")
    d = reports[0]["device"]
    title = (f"edgekit bench: {target.name} on {d['cpu']} ({d['cores']} cores), {d['runtime']} "
             f"{d['runtime_version']}, {thread_list[0]} thread(s)")
    stem = f"matrix-{target.name}"
    paths = matrix.write(rows, Path(report_dir) if report_dir else Path(out_dir) / "bench", stem, title)
    if json_file:
        Path(json_file).write_text(json.dumps({"rows": rows, "reports": reports}, indent=2, default=str) + "\n")
    click.echo(matrix.markdown(rows, title))
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()), err=True)


def _child(args: list[str]) -> None:
    """Run another edgekit command as a child process (its output is ours); its failure is ours too."""
    import subprocess

    r = subprocess.run([sys.executable, "-m", "edgekit.cli", *args])
    if r.returncode != 0:
        sys.exit(r.returncode)


def _bench_one(bundle: Path, images, limit, golden_limit, threads, thread_list, runs, warmup, runtime, history,
               device,
               ssh_config, remote_edgekit, remote_dir) -> dict:
    """One bundle, here or on a remote board; appended to the history. Exits with an error line on failure."""
    from . import bench as bench_mod
    from . import remote
    from .manifest import ManifestError, file_sha256, read

    bars = _Bars(quiet=not sys.stderr.isatty())
    try:
        if device:
            dev = remote.parse_device(device, ssh_config)
            read(bundle)  # verify before shipping it
            args = ["--threads", threads, "--runs", str(runs), "--warmup", str(warmup), "--runtime", runtime]
            args += ["--images", images] if images else []
            args += ["--limit", str(limit)] if limit else []
            args += ["--golden-limit", str(golden_limit)] if golden_limit else []
            click.echo(f"bench {bundle.name} on {dev.url}", err=True)
            raw = remote.bench(dev, bundle, file_sha256(bundle / "manifest.json"), args, remote_edgekit, remote_dir)
            try:
                report = {**json.loads(raw), "remote": dev.url}
            except json.JSONDecodeError:
                raise remote.RemoteError(f"{dev.url} returned a report that is not JSON") from None
        else:
            report = bench_mod.run(bundle, thread_list, runs, warmup, runtime, Path(images) if images else None,
                                   limit, golden_limit, bars)
    except (ManifestError, bench_mod.BenchError, runtimes_errors(), remote.RemoteError) as e:
        bars.close()
        _fail(str(e))
    bars.close()
    path = bench_mod.append_history(report, Path(history) if history else None)
    click.echo(f"  appended to {path}", err=True)
    return report


def runtimes_errors() -> type:
    from .runtimes import RuntimeMissing

    return RuntimeMissing


@main.command()
@click.option("--history", type=click.Path(dir_okay=False), default=None,
              help="History file [default: $EDGEKIT_HISTORY or ~/.local/share/edgekit/history.jsonl].")
@click.option("--last", default=20, show_default=True, help="Show the most recent N runs.")
def report(history, last) -> None:
    """Compare bench runs across devices and days (from the history file)."""
    from . import bench as bench_mod

    try:
        runs = bench_mod.read_history(Path(history) if history else None)
    except bench_mod.BenchError as e:
        _fail(str(e))
    if not runs:
        _fail(f"no bench runs recorded in {history or bench_mod.history_path()}; run edgekit bench first")
    click.echo(f"{'time':20} {'bundle':18} {'device':34} {'runtime':18} {'thr':>3} {'int8 p50':>9} "
               f"{'fp32 p50':>9} {'speedup':>7} {'agree vs PT':>11}")
    for r in runs[-last:]:
        d = r["device"]
        g = r.get("golden") or {}
        agree = g.get("vs_pytorch", {}).get("int8", {}).get("top1_agreement")
        for t, per in r["latency"].items():
            click.echo(f"{r['time'][:19]:20} {r['bundle']['name'][:18]:18} {(d['cpu'] or '')[:34]:34} "
                       f"{(d['runtime'] + ' ' + str(d['runtime_version']))[:18]:18} {t:>3} "
                       f"{per['int8']['p50_ms']:8.2f}m {per['fp32']['p50_ms']:8.2f}m {per['int8_speedup']:6.2f}x "
                       f"{'' if agree is None else f'{100 * agree:10.2f}%':>11}")


@main.command()
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--to", "dest", required=True, help="A directory (or file://DIR) or oci://HOST[:PORT]/REPO[:TAG] "
                                                 "(tag default: the bundle name, e.g. lite1-arm64-int8).")
@click.option("--force", is_flag=True, help="Replace a different bundle already under that name or tag.")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP to a registry that is not on loopback.")
def publish(bundle, dest, force, insecure) -> None:
    """Publish a verified bundle to a directory or an OCI registry (idempotent, atomic)."""
    from . import publish as pub

    try:
        click.echo(pub.publish(Path(bundle), dest, force, insecure))
    except pub.PublishError as e:
        _fail(str(e))


@main.command()
@click.argument("ref")
@click.option("--to", "to_dir", default="dist", show_default=True, type=click.Path(file_okay=False),
              help="Directory the bundle is placed in (as TO/<bundle name>).")
@click.option("--force", is_flag=True, help="Replace a different bundle of the same name in TO.")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP to a registry that is not on loopback.")
def pull(ref, to_dir, force, insecure) -> None:
    """Fetch a published bundle (a directory or oci://HOST/REPO:TAG), verify every file, place it atomically."""
    from . import publish as pub

    try:
        click.echo(f"pulled {ref} to {pub.pull(ref, Path(to_dir), force, insecure)} (every file verified)")
    except pub.PublishError as e:
        _fail(str(e))


@main.command(name="ls")
@click.argument("dest")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP to a registry that is not on loopback.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ls_cmd(dest, insecure, as_json) -> None:
    """List the bundles at a destination (directory or oci://HOST/REPO) with their key figures."""
    from . import publish as pub

    try:
        rows = pub.ls(dest, insecure)
    except pub.PublishError as e:
        _fail(str(e))
    if as_json:
        click.echo(pub.to_json(rows))
        return
    click.echo(f"{'name':24} {'variant':7} {'target':7} {'agreement':>9} {'top-1':>7} {'p50 ms':>7}  created")
    for r in rows:
        agree = r.get("vnd.edgekit.agreement")
        top1 = r.get("vnd.edgekit.top1")
        click.echo(f"{r['name'][:24]:24} {r.get('vnd.edgekit.variant', ''):7} {r.get('vnd.edgekit.target', ''):7} "
                   f"{'' if agree is None else f'{100 * float(agree):8.2f}%':>9} "
                   f"{'' if top1 is None else f'{100 * float(top1):6.2f}%':>7} "
                   f"{r.get('vnd.edgekit.latency_p50_ms', ''):>7}  {r.get('org.opencontainers.image.created', '')}")


if __name__ == "__main__":
    main()
