"""The `edgekit` command line."""
from __future__ import annotations

import json
import os
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
    g = m["export"]["graph"]
    lines.append(f"  onnx: opset {g['opset']}, {g['nodes']} nodes, parity max|diff| "
                 f"{m['export']['parity']['max_abs_diff']:.1e}")
    if v.get("images"):
        line = (f"  validation ({v['images']} held-out images, {v['runtime']}): top-1 agreement "
                f"{100 * v['top1_agreement']:.2f} %, logit SQNR {v['logit_sqnr_db']:.1f} dB")
        if "top1_fp32" in v:
            line += (f", top-1 FP32 {100 * v['top1_fp32']:.2f} % -> INT8 {100 * v['top1_int8']:.2f} % "
                     f"(drop {v['top1_drop_points']:.2f} points)")
        lines.append(line)
    if not m["weights"]["pretrained"]:
        lines.append("  WARNING: " + m["weights"]["warning"])
    return "\n".join(lines)


@main.command()
@click.option("--variant", "variant_name", default="lite0", show_default=True,
              help=f"One of {', '.join(VARIANTS)} or 'all'.")
@click.option("--target", "target_name", default="x86", show_default=True, help="Target name or alias.")
@click.option("--calib", default=None, help="Calibration images: a directory (recursive) or a recipe name. "
                                             "[default: the embedded 'default' recipe]")
@click.option("--num-calib", default=200, show_default=True, help="Number of calibration images.")
@click.option("--num-val", default=1000, show_default=True, help="Most validation images to use.")
@click.option("--method", default=None, type=click.Choice(["minmax", "percentile", "entropy"]),
              help="Activation range calibration [default: minmax, quantize.DEFAULT_METHOD].")
@click.option("--val", "val_dir", default=None, help="Validation images (default: held out from --calib).")
@click.option("--out", "out_dir", default="dist", show_default=True, type=click.Path(file_okay=False),
              help="Where bundles are written.")
@click.option("--weights", "weights_file", default=None, type=click.Path(dir_okay=False),
              help="Checkpoint (PyPI lukemelas-style or timm format).")
@click.option("--random-weights", is_flag=True, help="Allow building a variant with no weights (random init).")
@click.option("--no-cache", is_flag=True, help="Rebuild every stage (cache neither read nor kept).")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
              help="Stage cache [default: $EDGEKIT_CACHE_DIR or ~/.cache/edgekit].")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest(s) as JSON on stdout.")
def build(variant_name, target_name, calib, num_calib, num_val, method, val_dir, out_dir, weights_file,
          random_weights, no_cache, cache_dir, as_json) -> None:
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
    from .backends import BackendError
    from .classes import imagenet1k
    from .export import ExportError
    from .imagesets import ImageError
    from .weights import WeightsError, resolve_weights

    classes = imagenet1k()
    tmp_cache = tempfile.TemporaryDirectory(prefix="edgekit-nocache-") if no_cache else None
    store = cache_mod.Cache(Path(tmp_cache.name) if tmp_cache else (Path(cache_dir) if cache_dir else None))
    bars = _Bars(quiet=as_json or not sys.stderr.isatty())
    results = []
    try:
        selection = calibration_sets.select(calib, num_calib, num_val, val_dir, classes.index_of_wnid)
        for v in variants_:
            weights = resolve_weights(v, weights_file, random_weights)
            click.echo(f"edgekit build {v.name} -> {target.name} ({target.format}); weights: {weights.origin}",
                       err=True)
            req = pipeline.BuildRequest(v, target, weights, selection,
                                        quantize.QuantOptions(method=method or quantize.DEFAULT_METHOD), Path(out_dir))
            t = time.perf_counter()
            path, m = pipeline.build(req, store, list(classes.names), bars)
            bars.close()
            click.echo(_summary(path, m) + f"\n  total {time.perf_counter() - t:.1f} s", err=True)
            results.append(m)
    except (WeightsError, calibration_sets.CalibrationError, pipeline.BuildError, ExportError,
            quantize.QuantizeError, BackendError, ImageError, FileNotFoundError, NotADirectoryError) as e:
        bars.close()
        _fail(str(e))
    finally:
        if tmp_cache:
            tmp_cache.cleanup()
    if as_json:
        click.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2))


if __name__ == "__main__":
    main()
