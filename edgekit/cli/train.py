"""`edgekit train`: a lite variant fine-tuned on a folder of photos, one folder per class."""
from __future__ import annotations

import json

import click

from edgekit.cli.app import main
from edgekit.cli.progress import Bars
from edgekit.core.variants import VARIANTS
from edgekit.errors import UsageError


@main.command()
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False),
              help="Training photos, one folder per class (the folder names are the class names).")
@click.option("--variant", "variant_name", default="lite0", show_default=True, type=click.Choice(list(VARIANTS)),
              help="The variant to start from (its pretrained ImageNet weights).")
@click.option("--val", "val_dir", default=None, type=click.Path(file_okay=False),
              help="Validation photos with the same class folders [default: a share of each class held out].")
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False),
              help="The checkpoint to write [default: NAME-VARIANT.pt]; the report goes beside it.")
@click.option("--name", default=None, help="The model's name, the prefix of its bundles [default: the --data "
                                            "folder's name, or its parent's for train/, data/, images/ ...].")
@click.option("--mode", default="finetune", show_default=True, type=click.Choice(["head", "finetune"]),
              help="head: the classifier alone on a frozen trunk (features computed once, fastest); finetune: then "
                   "the whole network (or its last --stages stages) on augmented crops.")
@click.option("--epochs", default=None, type=int, help="Most epochs [default: head 100, finetune 10]; early "
                                                       "stopping may end sooner.")
@click.option("--stages", default="all", show_default=True,
              help="finetune: how many of the last stages of blocks learn (1-7), or all.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--val-fraction", default=0.2, show_default=True, help="Share of each class held out without --val.")
@click.option("--patience", default=4, show_default=True,
              help="Epochs without a better validation accuracy before stopping (the head waits 5x as many).")
@click.option("--seed", default=0, show_default=True, help="The same data, options and seed give the same "
                                                           "checkpoint on the same machine.")
@click.option("--weights", "weights_file", default=None, type=click.Path(dir_okay=False),
              help="Start from this checkpoint's trunk (lite3/lite4: the timm release file) [default: the "
                   "variant's packaged ImageNet weights].")
@click.option("--int8-aware", is_flag=True,
              help="Ask every build of the checkpoint for INT8-aware fine-tuning (`edgekit build --int8-aware`): its "
                   "int8 weights tuned through that target's own int8 arithmetic.")
@click.option("--force", is_flag=True, help="Replace an existing checkpoint at --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the training record as JSON on stdout.")
def train(data_dir, variant_name, val_dir, out_file, name, mode, epochs, stages, batch_size, val_fraction, patience,
          seed, weights_file, int8_aware, force, as_json) -> None:
    """Fine-tune a lite variant on your own photos; `edgekit build --weights CHECKPOINT` then builds it for any
    target, its class names included."""
    from edgekit.training import TrainOptions
    from edgekit.training import train as run

    bars = Bars()

    def say(line: str) -> None:
        bars.close()  # an epoch's bar gives way to its line
        click.echo(line, err=True)

    if stages != "all" and not stages.isdigit():
        raise UsageError(f"--stages {stages!r}: give a number of stages (1-7) or all")
    options = TrainOptions(mode=mode, epochs=epochs, batch_size=batch_size,
                           stages=None if stages == "all" else int(stages), val_fraction=val_fraction,
                           patience=patience, seed=seed, int8_aware=int8_aware)
    try:
        result = run(data_dir, variant_name, val=val_dir, out=out_file, name=name, weights=weights_file,
                     options=options, force=force, progress=bars, say=say)
        bars.done()
    finally:
        bars.close()
    r = result.record
    lines = [f"checkpoint: {result.checkpoint}", f"report: {result.report}" + (f", {result.plot}" if result.plot
                                                                                   else "")]
    lines += ["  per class (validation, FP32; 95 % interval):"] + [
        f"    {row['class']:{max(len(x['class']) for x in r['per_class'])}} {row['images']:4d} images "
        f"{100 * row['accuracy']:6.1f} %" + (f" [{100 * row['accuracy_ci95'][0]:.0f}, {100 * row['accuracy_ci95'][1]:.0f}]"
                                             if row.get("accuracy_ci95") else "") for row in r["per_class"]]
    lines.append(f"next: edgekit build --weights {result.checkpoint} --target arm64 --calib {data_dir}   (or --target "
                 "x86, onnx)" + ("; its builds fine-tune for int8" if int8_aware else ""))
    click.echo("\n".join(lines), err=True)
    if as_json:
        click.echo(json.dumps(r, indent=2))
