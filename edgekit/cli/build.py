"""`edgekit variants`, `edgekit build`, `edgekit analyze`: the build side's commands."""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import click

from edgekit.builder.request import METHODS, ROUNDINGS
from edgekit.cli import main, render
from edgekit.cli.progress import Bars
from edgekit.core.variants import VARIANTS, resolve_variants
from edgekit.errors import UsageError


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def variants(as_json: bool) -> None:
    """The variant table, with the MACs edgekit computes beside the card's figures."""
    from edgekit.core.arch import count_macs

    rows = [{**v.to_dict(), "macs": count_macs(v)} for v in VARIANTS.values()]
    click.echo(json.dumps(rows, indent=2) if as_json else render.variants_table(rows))


_MODEL_OPTIONS = [
    click.option("--variant", "variant_name", default="lite0", show_default=True,
                 help=f"One of {', '.join(VARIANTS)} or 'all'."),
    click.option("--target", "target_name", default="x86", show_default=True, help="Target name or alias."),
    click.option("--calib", default=None, help="Calibration images: a directory (recursive) or a recipe name. "
                                                "[default: the embedded 'default' recipe]"),
    click.option("--num-calib", default=200, show_default=True, help="Number of calibration images."),
    click.option("--num-val", default=1000, show_default=True, help="Most validation images to use."),
    click.option("--method", default=None, type=click.Choice(METHODS),
                 help="Activation range calibration [default: the target's calibration_method]."),
    click.option("--rounding", default="gptq", show_default=True, type=click.Choice(ROUNDINGS),
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


def _requests(variant_name, target_name, calib, num_calib, num_val, method, rounding, val_dir, weights_file,
              random_weights, out_dir, **extra):
    """One BuildRequest per variant (weights resolved lazily, in order), and the class index."""
    from edgekit.builder.calibration import select
    from edgekit.builder.classes import imagenet1k
    from edgekit.builder.request import BuildRequest, QuantOptions
    from edgekit.builder.route import check_method
    from edgekit.builder.weights import resolve_weights
    from edgekit.core.targets import get_target

    variants_ = resolve_variants(variant_name)
    target = get_target(target_name)
    if weights_file and len(variants_) > 1:
        raise UsageError("--weights names one checkpoint: use it with a single --variant, not 'all'")
    classes = imagenet1k()
    selection = select(calib, num_calib, num_val, val_dir, classes.index_of_wnid)
    quant = QuantOptions(method=method or target.calibration_method, weight_rounding=rounding)
    check_method(target, quant.method)

    def each():
        for v in variants_:
            yield BuildRequest(v, target, resolve_weights(v, weights_file, random_weights), selection, quant,
                               Path(out_dir), **extra)

    return each(), classes


@main.command()
@_model_options
@click.option("--max-drop", default=None, type=float,
              help="Accuracy budget: most top-1 points INT8 may lose against FP32 on the validation images. The "
                   "build tries the other range method, then raises layers (float on x86/onnx, int16 activations "
                   "on arm64), most sensitive first, until it holds, or fails saying what it tried.")
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
    from edgekit.builder.cache import Cache, throwaway
    from edgekit.builder.request import Budget

    budget = None if max_drop is None and min_agreement is None else \
        Budget(max_drop, None if min_agreement is None else min_agreement / 100)
    requests, classes = _requests(variant_name, target_name, calib, num_calib, num_val, method, rounding, val_dir,
                                  weights_file, random_weights, out_dir, allow_float=allow_float, budget=budget)
    with throwaway(cache_dir) if no_cache else contextlib.nullcontext(Cache(cache_dir)) as store:
        results = _build_each(requests, store, classes)
    if as_json:
        click.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2))


def _build_each(requests, store, classes) -> list[dict]:
    """Each request built in turn, with progress and a summary on stderr; their manifests."""
    from edgekit import pipeline

    bars = Bars()
    results = []
    try:
        for req in requests:
            click.echo(f"edgekit build {req.variant.name} -> {req.target.name} ({req.target.format}); weights: "
                       f"{req.weights.origin}", err=True)
            t = time.perf_counter()
            path, m = pipeline.build(req, store, list(classes.names), list(classes.wnids), bars)
            bars.done()
            click.echo(render.build_summary(path, m) + f"\n  total {time.perf_counter() - t:.1f} s", err=True)
            results.append(m)
    finally:
        bars.close()
    return results


@main.command()
@_model_options
@click.option("--images", default=64, show_default=True,
              help="Calibration images each one-layer-raised model is run on (arm64 simulates its integer "
                   "arithmetic, which takes far longer per image than onnxruntime).")
@click.option("--top", default=20, show_default=True, help="Layers to print (the JSON has all).")
@click.option("--out", "out_dir", default="dist", show_default=True, type=click.Path(file_okay=False),
              help="Where the JSON report <variant>-<target>.sensitivity.json is written.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def analyze(variant_name, target_name, calib, num_calib, num_val, method, rounding, val_dir, weights_file,
            random_weights, cache_dir, images, top, out_dir, as_json) -> None:
    """Per-layer sensitivity: each int8 layer raised on its own (in float on x86/onnx; its output tensor in int16,
    a16w8, on arm64), its effect on logit SQNR and agreement, sorted; and the activation ranges calibration chose."""
    from edgekit import pipeline
    from edgekit.builder.cache import Cache
    from edgekit.core.bundle import write_json

    if len(resolve_variants(variant_name)) != 1:
        raise UsageError("analyze takes one --variant, not 'all'")
    if images < 1:
        raise UsageError("--images must be at least 1")
    requests, _ = _requests(variant_name, target_name, calib, num_calib, num_val, method, rounding, val_dir,
                            weights_file, random_weights, out_dir)
    req = next(requests)
    bars = Bars()
    try:
        report = pipeline.analyze(req, Cache(cache_dir), images, bars)
        bars.done()
    finally:
        bars.close()
    path = write_json(Path(out_dir) / f"{req.variant.name}-{req.target.name}.sensitivity.json", report)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(render.analysis_table(report, top))
    click.echo(f"report: {path}")
