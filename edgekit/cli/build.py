"""`edgekit variants`, `edgekit build`, `edgekit analyze`: the build side's commands."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from edgekit.builder.options import BuildOptions, check
from edgekit.builder.request import METHODS, ROUNDINGS
from edgekit.cli import render
from edgekit.cli.app import main
from edgekit.cli.progress import Bars
from edgekit.core.variants import VARIANTS, resolve_variants
from edgekit.errors import ClusterError, UsageError


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def variants(as_json: bool) -> None:
    """The variant table, with the MACs edgekit computes beside the card's figures."""
    from edgekit.core.arch import count_macs

    rows = [{**v.to_dict(), "macs": count_macs(v)} for v in VARIANTS.values()]
    click.echo(json.dumps(rows, indent=2) if as_json else render.variants_table(rows))


_MODEL_OPTIONS = [
    click.option("--variant", "variant_name", default=None,
                 help=f"One of {', '.join(VARIANTS)}, a comma-separated list or 'all' (analyze: one). [default: the "
                      "variant a checkpoint of `edgekit train` was trained from, else lite0]"),
    click.option("--target", "target_name", default="x86", show_default=True,
                 help="Target name or alias, a comma-separated list or 'all' (analyze: one)."),
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
                 help="Checkpoint: what `edgekit train` wrote (its classes and name come with it), or a state dict "
                      "(timm or lukemelas-style keys)."),
    click.option("--labels", "labels_file", default=None, type=click.Path(dir_okay=False),
                 help="Class names of a state dict whose head is not ImageNet's 1000 outputs: one per line, in the "
                      "order of the outputs."),
    click.option("--name", default=None,
                 help="A custom model's name, the bundle's prefix (NAME-lite0-x86-int8) [default: the checkpoint's "
                      "name, or its file name with --labels]."),
    click.option("--random-weights", is_flag=True, help="Allow building a variant with no weights (random init)."),
    click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
                 help="Stage cache [default: $EDGEKIT_CACHE_DIR or ~/.cache/edgekit]."),
]


def _model_options(f):
    """The options that say which model to quantize, how and on what images (build and analyze alike)."""
    for opt in reversed(_MODEL_OPTIONS):
        f = opt(f)
    return f


def _options(variant_name, calib, num_calib, num_val, method, rounding, val_dir, weights_file, labels_file, name,
             random_weights, cache_dir, **extra) -> tuple[str, BuildOptions]:
    """The variant(s) and the options, with paths made absolute (a --jobs child or a Ray worker does not start where
    this command did) and what the checkpoint says for itself (its variant, its name)."""
    from edgekit.builder.options import with_checkpoint

    def absolute(p: str | None) -> str | None:
        return str(Path(p).expanduser().resolve()) if p else None

    calib = absolute(calib) if calib and Path(calib).expanduser().exists() else calib  # else a recipe's name
    options = BuildOptions(calib=calib, num_calib=num_calib, num_val=num_val, method=method, rounding=rounding,
                           val_dir=absolute(val_dir), weights_file=absolute(weights_file),
                           labels_file=absolute(labels_file), name=name, random_weights=random_weights,
                           cache_dir=absolute(cache_dir), **extra)
    return with_checkpoint(options, variant_name)


@main.command()
@_model_options
@click.option("--max-drop", default=None, type=float,
              help="Accuracy budget: most top-1 points INT8 may lose against FP32 on the validation images. The "
                   "build tries the other range method, then INT8-aware fine-tuning, then raises layers (float on x86/onnx, int16 activations "
                   "on arm64), most sensitive first, until it holds, or fails saying what it tried.")
@click.option("--min-agreement", default=None, type=float,
              help="Accuracy budget: least top-1 agreement with FP32, in percent (e.g. 99.3).")
@click.option("--int8-aware/--no-int8-aware", default=None,
              help="After calibration, fine-tune the int8 weights through the target's own int8 arithmetic towards "
                   "the FP32 model, on the calibration images (minutes; the FP32 reference stays the original model). "
                   "Kept only if it beats post-training quantization on held-out calibration images. [default: off, "
                   "or on for a checkpoint of `edgekit train --int8-aware`]")
@click.option("--allow-float", is_flag=True, help="arm64: ship ops the integer path cannot handle as float "
                                                   "(the manifest lists them) instead of failing.")
@click.option("--out", "out_dir", default="dist", show_default=True, type=click.Path(file_okay=False),
              help="Where bundles are written.")
@click.option("--no-cache", is_flag=True, help="Rebuild every stage (cache neither read nor kept).")
@click.option("--force", is_flag=True, help="Replace a bundle of other weights or classes under the same name.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Several pairs (--variant/--target lists): build this many at once, each in its own process.")
@click.option("--ray", "ray_address", default=None, is_flag=False, flag_value="auto",
              help="Several pairs: each a task on the Ray cluster at this address (HEAD:PORT; alone, or 'auto': "
                   "$RAY_ADDRESS). Needs the cluster extra.")
@click.option("--retries", default=2, show_default=True, type=click.IntRange(min=0),
              help="With --ray: times a pair whose worker died (killed, out of memory, node lost) is run again.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the manifest as JSON on stdout (several pairs: the summary rows, each with its manifest).")
def build(variant_name, target_name, calib, num_calib, num_val, method, rounding, val_dir, weights_file, labels_file,
          name, random_weights, cache_dir, max_drop, min_agreement, int8_aware, allow_float, out_dir, no_cache, force, jobs,
          ray_address, retries, as_json) -> None:
    """Build validated INT8 bundle(s): export, quantize, convert for the target, validate, bundle.

    --variant and --target take a name, a comma-separated list or 'all': every pair is built (one at a time, in
    --jobs processes, or on a Ray cluster with --ray) and a summary table ends the run; a pair that fails fails
    alone, and the exit status says whether any did."""
    from edgekit.cluster import pair

    variant_name, options = _options(variant_name, calib, num_calib, num_val, method, rounding, val_dir,
                                     weights_file, labels_file, name, random_weights, cache_dir, max_drop=max_drop,
                                     min_agreement=min_agreement, allow_float=allow_float, no_cache=no_cache,
                                     force=force, int8_aware=int8_aware)
    if ray_address is not None and jobs > 1:
        raise UsageError("--jobs runs pairs in processes here, --ray on a cluster: choose one")
    todo = pair.pairs(variant_name, target_name, options.name)
    check(options, {p.variant for p in todo}, {p.target for p in todo})
    results = _run(todo, options, Path(out_dir), jobs, ray_address, retries)
    if as_json:
        rows = [dict(r.row(), manifest=r.manifest) for r in results]
        click.echo(json.dumps(results[0].manifest if len(results) == 1 and results[0].ok else rows, indent=2))
    failed = [r for r in results if not r.ok]
    if len(results) == 1 and failed:
        raise ClusterError(failed[0].error)
    if failed:
        raise ClusterError(f"{len(failed)} of {len(results)} pairs failed: "
                           + "; ".join(f"{r.pair.name}: {r.error}" for r in failed))


def _run(todo, options: BuildOptions, out: Path, jobs: int, ray_address: str | None, retries: int):
    """The pairs built the way asked, with one progress view on stderr and the summary table at the end."""
    from edgekit.cluster import matrix, pair
    from edgekit.core.targets import get_target

    bars = Bars()
    n, t0 = len(todo), time.perf_counter()
    seen = []
    inline = ray_address is None and (jobs == 1 or n == 1)  # stage bars only for a pair built in this process

    def started(pair, where):
        if inline:
            count = f"[{len(seen) + 1}/{n}] " if n > 1 else ""
            click.echo(f"{count}edgekit build {pair.label} ({get_target(pair.target).format})", err=True)
        else:
            click.echo(f"  started {pair.label} ({where})", err=True)

    def finished(r):
        seen.append(r)
        bars.done() if r.ok else bars.close()
        if inline and r.ok:
            click.echo(render.build_summary(r.path, r.manifest) + f"\n  total {r.seconds:.1f} s", err=True)
        elif inline:
            if n > 1:  # one pair: its error line ends the command, said once
                click.echo(f"  failed: {r.error}", err=True)
        else:
            click.echo(f"[{len(seen)}/{n}] {r.pair.label} " + (f"built in {r.seconds:.1f} s on {r.where}" if r.ok
                       else f"FAILED after {r.seconds:.1f} s: {r.error}"), err=True)

    events = pair.Events(started, finished, lambda line: click.echo(line, err=True), bars)
    try:
        results = matrix.run(todo, options, out, jobs, ray_address, retries, events)
    finally:
        bars.close()
    if n > 1:
        click.echo(render.matrix_summary([r.row() for r in results], time.perf_counter() - t0), err=True)
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
            labels_file, name, random_weights, cache_dir, images, top, out_dir, as_json) -> None:
    """Per-layer sensitivity: each int8 layer raised on its own (in float on x86/onnx; its output tensor in int16,
    a16w8, on arm64), its effect on logit SQNR and agreement, sorted; and the activation ranges calibration chose."""
    from edgekit import pipeline
    from edgekit.builder.cache import Cache
    from edgekit.core.bundle import write_json

    from edgekit.builder.options import requests

    variant_name, options = _options(variant_name, calib, num_calib, num_val, method, rounding, val_dir,
                                     weights_file, labels_file, name, random_weights, cache_dir)
    if len(resolve_variants(variant_name)) != 1:
        raise UsageError("analyze takes one --variant, not 'all'")
    if images < 1:
        raise UsageError("--images must be at least 1")
    req = next(requests(options, variant_name, target_name, Path(out_dir))[0])
    bars = Bars()
    try:
        report = pipeline.analyze(req, Cache(cache_dir), images, bars)
        bars.done()
    finally:
        bars.close()
    stem = f"{req.name}-" if req.name else ""
    path = write_json(Path(out_dir) / f"{stem}{req.variant.name}-{req.target.name}.sensitivity.json", report)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(render.analysis_table(report, top))
    click.echo(f"report: {path}")
