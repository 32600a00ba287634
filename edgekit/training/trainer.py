"""`edgekit train` / `edgekit.train()`: a lite variant fine-tuned on a folder of photos, one folder per class.

    photos/<class>/*.jpg ─► classes (folder names, sorted) ─► stratified validation split (or --val DIR)
      ─► images decoded once (pixel stores on disk) ─► head on frozen features (every mode starts here)
      ─► [finetune: the whole network (or its last --stages) on augmented crops]
      ─► checkpoint (tensors + plain-data record) + report (JSON, PNG)

The checkpoint is what `edgekit build --weights` reads: its classes, variant and name come with it."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgekit import __version__
from edgekit.core import contract, intervals
from edgekit.core.bundle import check_model_name, write_atomic, write_json
from edgekit.core.variants import get_variant
from edgekit.device.imagesets import digest
from edgekit.errors import DataError, UsageError, WeightsError
from edgekit.progress import Progress, no_progress
from edgekit.training import data as data_mod

MODES = ("head", "finetune")
DEFAULT_EPOCHS = {"head": 100, "finetune": 10}
HEAD_EPOCHS_BEFORE_FINETUNE = 60  # the head fitted first (LP-FT): fine-tuning starts from a head that already works


@dataclass(frozen=True)
class TrainOptions:
    """How to train, as plain values (recorded in the checkpoint)."""

    mode: str = "finetune"  # head: the classifier alone on a frozen trunk; finetune: the network (or its last stages)
    epochs: int | None = None  # None: the mode's default (DEFAULT_EPOCHS)
    batch_size: int = 32
    stages: int | None = None  # finetune: how many of the last stages of blocks learn (of 7); None: all of it
    val_fraction: float = 0.2  # held out of each class when no --val is given
    label_smoothing: float = 0.1
    dropout: float = 0.2
    patience: int = 4  # epochs without a better validation accuracy before stopping (head: x5)
    seed: int = 0
    int8_aware: bool = False  # the checkpoint asks its builds for INT8-aware fine-tuning (each target's own int8)

    def check(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"--mode {self.mode!r}: choose one of {', '.join(MODES)}")
        for name, value, low in (("--epochs", self.epochs, 1), ("--batch-size", self.batch_size, 2),
                                 ("--stages", self.stages, 1), ("--patience", self.patience, 1)):
            if value is not None and value < low:
                raise UsageError(f"{name} {value}: give {low} or more")
        if not 0 < self.val_fraction < 1:
            raise UsageError(f"--val-fraction {self.val_fraction}: give a share between 0 and 1 (e.g. 0.2)")
        if not 0 <= self.label_smoothing < 1 or not 0 <= self.dropout < 1:
            raise UsageError("--label-smoothing and --dropout take values in [0, 1)")

    @property
    def epochs_run(self) -> int:
        return self.epochs or DEFAULT_EPOCHS[self.mode]


@dataclass
class TrainResult:
    checkpoint: Path
    report: Path
    plot: Path | None
    record: dict  # what the checkpoint records: classes, data, epochs, best epoch, validation figures

    @property
    def val_accuracy(self) -> float:
        return self.record["val_accuracy"]


@contextmanager
def _threads():
    """All CPU threads while training; the caller's setting afterwards."""
    import torch

    before = torch.get_num_threads()
    try:
        cores = len(os.sched_getaffinity(0))  # what this process may use (a container's share), not the machine's
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or before
    torch.set_num_threads(cores)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _out_paths(out: str | Path | None, name: str, variant: str, force: bool) -> tuple[Path, Path, Path]:
    ckpt = Path(out) if out else Path(f"{name}-{variant}.pt")
    if ckpt.suffix != ".pt":
        raise UsageError(f"--out {ckpt}: name the checkpoint FILE.pt")
    if ckpt.is_dir():
        raise UsageError(f"--out {ckpt} is a directory: name the checkpoint FILE.pt")
    if ckpt.exists() and not force:
        raise UsageError(f"{ckpt} exists: pass --force to replace it, or --out another FILE.pt")
    parent = ckpt.parent if str(ckpt.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write to {parent}: choose --out in a folder you can write")
    stem = ckpt.with_suffix("")
    return ckpt, stem.with_name(stem.name + ".report.json"), stem.with_name(stem.name + ".report.png")


def train(data: str | Path, variant: str = "lite0", *, val: str | Path | None = None, out: str | Path | None = None,
          name: str | None = None, weights: str | Path | None = None, options: TrainOptions | None = None,
          force: bool = False, plot: bool = True, progress: Progress = no_progress,
          say: Callable[[str], None] = lambda line: None, **settings) -> TrainResult:
    """Fine-tune `variant` (its pretrained ImageNet weights, or `weights`) on `data`, one folder per class; write
    the checkpoint (`out`, default NAME-VARIANT.pt) and its report. Returns where they are and the figures.
    `settings` are TrainOptions fields (mode="head", epochs=5, ...), over `options`."""
    import dataclasses

    from edgekit.models.weights import resolve_weights

    t_start = time.perf_counter()
    known = {f.name for f in dataclasses.fields(TrainOptions)}
    if set(settings) - known:
        raise UsageError(f"unknown training option(s) {', '.join(sorted(set(settings) - known))}: choose from "
                         f"{', '.join(sorted(known))}")
    options = dataclasses.replace(options or TrainOptions(), **settings)
    options.check()
    v = get_variant(variant)
    name = check_model_name(name) if name else data_mod.default_name(Path(data))
    paths = _out_paths(out, name, v.name, force)
    if weights is None and not v.has_packaged_weights:
        raise WeightsError(f"{v.name} has no packaged weights to start from: pass --weights with "
                           f"{v.weights.upstream_file} (timm format)")
    ref = resolve_weights(v, weights, random_weights=False)
    split = _split(data, val, options)
    say(f"{len(split.classes)} classes: {', '.join(split.classes.names[:12])}"
        f"{', ...' if len(split.classes) > 12 else ''}")
    say(f"{len(split.train)} training and {len(split.val)} validation images ({split.val_source})")
    fitted = _fit(v, ref, split, options, progress, say)
    record = _record(split, fitted, options, ref)
    seconds = time.perf_counter() - t_start
    result = _write(paths, name, v, split, fitted, record, options, seconds, plot)
    say(f"best epoch {fitted.best.epoch} of {len(fitted.best.history)}: validation accuracy "
        f"{intervals.percent(record['val_accuracy'], record['val_accuracy_ci95'])} (95 % interval) on "
        f"{len(fitted.val_labels)} images; {seconds:.1f} s in all")
    return result


@dataclass
class _Split:
    """The images: classes, the training and validation samples, and where the validation ones come from."""
    classes: object  # core.classes.ClassIndex
    root: Path
    train: list
    val: list
    val_source: str


def _split(data: str | Path, val: str | Path | None, options: TrainOptions) -> _Split:
    folders = data_mod.class_folders(data)
    if val is not None:
        held = data_mod.class_folders(val, folders.classes, what="--val")
        train_s, val_s = sorted(folders.samples, key=lambda s: s.id), sorted(held.samples, key=lambda s: s.id)
        overlap = {s.digest for s in train_s} & {s.digest for s in val_s}
        if overlap:
            raise DataError(f"--val shares {len(overlap)} image(s) with --data; validation images must be others")
        return _Split(folders.classes, folders.root, train_s, val_s, f"--val {Path(val).name}/")
    train_s, val_s = data_mod.split(folders, options.val_fraction, options.seed)
    return _Split(folders.classes, folders.root, train_s, val_s,
                  f"held out of {Path(data).name}/ ({100 * options.val_fraction:g} % of each class)")


@dataclass
class _Fitted:
    """What training produced: the best weights, the validation logits, the epochs and the phases' times."""
    state: dict
    logits: np.ndarray
    val_labels: np.ndarray
    train_ids: list
    val_ids: list
    best: object  # loop.Best of the last phase
    history: list
    phases: dict
    device: str


def _fit(v, ref, split: _Split, options: TrainOptions, progress: Progress, say) -> _Fitted:
    """Decode the images once, fit the head on frozen features, then (finetune) the network; the best epoch's
    weights and its validation logits."""
    import torch

    from edgekit.models.weights import build_trunk
    from edgekit.training import loop

    prep = contract.preprocessing(v)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    epochs = options.epochs_run
    with _threads(), data_mod.workdir() as tmp:
        torch.manual_seed(options.seed)
        canvas = v.resize_size if options.mode != "head" else None
        tr = data_mod.decode(split.train, prep, Path(tmp), "training", canvas, progress)
        va = data_mod.decode(split.val, prep, Path(tmp), "validation", None, progress)
        read = set(tr.ids)
        data_mod.check_train([s for s in split.train if s.id in read], split.classes, split.root)
        if len(va.ids) == 0:
            raise DataError("none of the validation images could be read; give --val DIR with readable photos")
        s = loop.Setup(device, options.batch_size, v.mean, v.std, options.seed, options.label_smoothing, progress,
                       say)
        model = build_trunk(v, ref, len(split.classes)).to(device)
        if device.type == "cpu":
            model = model.to(memory_format=torch.channels_last)
        y_tr = torch.from_numpy(tr.labels).to(device)
        y_va = torch.from_numpy(va.labels).to(device)
        t0 = time.perf_counter()
        f_tr = loop.features(model, tr.eval, s, "features of the training images (frozen trunk)")
        f_va = loop.features(model, va.eval, s, "features of the validation images")
        head_epochs = epochs if options.mode == "head" else HEAD_EPOCHS_BEFORE_FINETUNE
        head_patience = options.patience * 5  # an epoch of the head is milliseconds: wait longer
        torch.manual_seed(options.seed)
        best = loop.fit_head(model.classifier, f_tr, y_tr, f_va, y_va, s, head_epochs, head_patience,
                             options.dropout)
        history = list(best.history)
        phases = {"head": {"seconds": round(time.perf_counter() - t0, 1), "best_epoch": best.epoch,
                           "val_accuracy": best.accuracy}}
        if options.mode != "head":
            # the fitted head is fine-tuning's starting point, not a rival: on a few hundred held-out photos the two
            # often differ by one image, which would keep the less trained model (docs/training.md)
            t0 = time.perf_counter()
            torch.manual_seed(options.seed)
            best = loop.finetune(model, tr.canvas, tr.labels, va.eval, va.labels, s, epochs, options.patience,
                                 options.stages, options.dropout, v.input_size)
            history += best.history
            phases["finetune"] = {"seconds": round(time.perf_counter() - t0, 1), "best_epoch": best.epoch,
                                  "val_accuracy": best.accuracy}
        logits = loop.evaluate(model.eval(), va.eval, s, "validate the best epoch").cpu().numpy()
        state = {k: t.detach().cpu().contiguous() for k, t in model.state_dict().items()}
    return _Fitted(state, logits, va.labels, list(tr.ids), list(va.ids), best, history, phases, device.type)


def _record(split: _Split, fitted: _Fitted, options: TrainOptions, ref) -> dict:
    """What the checkpoint records of its training: options, data digests, epochs, validation figures."""
    import torch

    pred = fitted.logits.argmax(1)
    classes, labels = split.classes, fitted.val_labels
    n = len(classes)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = [{"class": c, "images": int(confusion[i].sum()),
                  "accuracy": float(confusion[i, i] / max(1, confusion[i].sum())),
                  "accuracy_ci95": list(intervals.wilson(int(confusion[i, i]), int(confusion[i].sum())))}
                 for i, c in enumerate(classes.names)]
    best = fitted.best
    return {
        "mode": options.mode, "options": asdict(options), "epochs": options.epochs_run,
        "epochs_run": len(best.history), "best_epoch": best.epoch, "val_accuracy": float((pred == labels).mean()),
        "val_accuracy_ci95": list(intervals.wilson(int((pred == labels).sum()), len(labels))),
        "per_class": per_class, "confusion": confusion.tolist(), "train_images": len(fitted.train_ids),
        "val_images": len(fitted.val_ids), "val_source": split.val_source,
        "skipped_unreadable": len(split.train) + len(split.val) - len(fitted.train_ids) - len(fitted.val_ids),
        "data_digest": digest(split.train + split.val), "train_digest": digest(split.train),
        "val_digest": digest(split.val),
        "phases": {k: {kk: vv for kk, vv in p.items() if kk != "seconds"} for k, p in fitted.phases.items()},
        "history": [e.record() for e in fitted.history], "weights": ref.origin, "device": fitted.device,
        "torch": str(torch.__version__), "edgekit": __version__,
    }


def _write(paths: tuple[Path, Path, Path], name: str, v, split: _Split, fitted: _Fitted, record: dict,
           options: TrainOptions, seconds: float, plot: bool) -> TrainResult:
    """The checkpoint, its report and (plot) the report's picture, each written whole or not at all."""
    from edgekit.models import checkpoint

    ckpt, report_path, png_path = paths
    data = checkpoint.encode(fitted.state, {
        "name": name, "variant": v.name, "class_names": list(split.classes.names),
        "preprocessing": contract.preprocessing(v), "normalization": {"mean": list(v.mean), "std": list(v.std)},
        "training": record, "build": {"int8_aware": options.int8_aware}})
    report = {"checkpoint": ckpt.name, "name": name, "variant": v.name, "classes": list(split.classes.names),
              **record, "seconds": round(seconds, 1),
              "phase_seconds": {k: p["seconds"] for k, p in fitted.phases.items()},
              "epoch_seconds": [round(e.seconds, 2) for e in fitted.history]}
    png = None
    if plot:
        try:
            from edgekit.training.report import plot_png

            png = plot_png(report)
        except ModuleNotFoundError:  # matplotlib is the build extra's; the checkpoint does not need it
            plot = False
    write_atomic(ckpt, data)
    write_json(report_path, report)
    if png is not None:
        write_atomic(png_path, png)
    return TrainResult(ckpt, report_path, png_path if plot else None, record)
