"""A folder of photos, one folder per class: the classes, a stratified validation split, and the images decoded once
into pixel stores on disk (so memory is bounded by the batch, not by the data set)."""
from __future__ import annotations

import random
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.core.bundle import file_sha256, model_name_from
from edgekit.core.classes import ClassIndex, check_names, normalize
from edgekit.device import preprocess
from edgekit.device.imagesets import IMAGE_SUFFIXES, Sample, list_images, warn_skipped
from edgekit.errors import DataError, ImageError
from edgekit.progress import Progress, no_progress

MIN_TRAIN_PER_CLASS = 2  # and one more to validate on when no --val is given
GENERIC_NAMES = {"train", "training", "data", "dataset", "images", "photos", "pictures", "all"}


@dataclass(frozen=True)
class ClassFolders:
    """The images of a folder-per-class directory, labelled by their top-level folder."""

    root: Path
    classes: ClassIndex
    samples: list[Sample]

    def count(self, label: int) -> int:
        return sum(s.label == label for s in self.samples)


def class_folders(root: str | Path, classes: ClassIndex | None = None, what: str = "--data") -> ClassFolders:
    """Class names are the folder names in sorted order; with `classes` (the --data's) the folders must name the
    same classes (a --val directory)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{what} {root}: not a directory; give a folder with one sub-folder of photos per class")
    folders = {d.name: list_images(d) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    folders = {k: v for k, v in folders.items() if v}
    loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if classes is None:
        if len(folders) < 2:
            found = f"{len(folders)} class folder(s) with images" + (f" and {len(loose)} loose image(s)" if loose else "")
            raise DataError(f"{what} {root}: found {found}; a classifier needs at least two classes, one folder of "
                            "photos per class (for example photos/daisy/, photos/tulip/)")
        classes = ClassIndex(check_names(list(folders), f"{what} {root}"))
    else:
        want = {normalize(n) for n in classes.names}
        have = {normalize(n): n for n in folders}
        missing = sorted(n for n in classes.names if normalize(n) not in have)
        extra = sorted(n for k, n in have.items() if k not in want)
        if missing or extra:
            parts = ([f"no folder for {', '.join(missing[:5])}"] if missing else []) + \
                    ([f"folders that are no class of --data: {', '.join(extra[:5])}"] if extra else [])
            raise DataError(f"{what} {root} does not hold the classes of --data: {'; '.join(parts)}; give it the same "
                            "class folders")
    if loose:
        warnings.warn(f"{len(loose)} image(s) directly in {root} belong to no class folder and are left out "
                      f"({', '.join(sorted(loose)[:3])})", stacklevel=2)
    samples = []
    for folder, files in folders.items():
        label = classes.label_of(folder)
        samples += [Sample(f"{folder}/{p.relative_to(root / folder).as_posix()}", (lambda p=p: preprocess.open_rgb(p)),
                           label, file_sha256(p)) for p in files]
    return ClassFolders(root, classes, samples)


def split(data: ClassFolders, val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Stratified: the same share of every class held out (at least one image each), seeded. Copies of one photo
    (the same bytes, under any name or in any class) stay on one side: a copy on each would validate the model on
    an image it trained on (--val refuses such copies)."""
    train, val, side = [], [], {}  # side: digest -> the list its copies went to
    for i, name in enumerate(data.classes.names):
        items = [s for s in data.samples if s.label == i]
        if len(items) < MIN_TRAIN_PER_CLASS + 1:
            raise DataError(f"class '{name}' has {len(items)} image(s) in {data.root}: at least "
                            f"{MIN_TRAIN_PER_CLASS + 1} are needed to train and validate; add photos, or give --val DIR")
        copies: dict[str, list[Sample]] = {}
        for s in items:
            copies.setdefault(s.digest or s.id, []).append(s)
        free = [d for d in copies if d not in side]
        random.Random(f"{seed}:{name}").shuffle(free)  # without copies: the same order as shuffling the images
        n_val = min(len(items) - MIN_TRAIN_PER_CLASS, max(1, round(val_fraction * len(items))))
        held = sum(len(g) for d, g in copies.items() if side.get(d) is val)
        for d in free:  # a group of copies is held out where it fits, or as the class's first if training keeps enough
            fits = held + len(copies[d]) <= n_val or (held == 0 and len(items) - len(copies[d]) >= MIN_TRAIN_PER_CLASS)
            side[d] = val if fits else train
            held += len(copies[d]) if side[d] is val else 0
        for d, g in copies.items():
            side[d].extend(g)
    return sorted(train, key=lambda s: s.id), sorted(val, key=lambda s: s.id)


def check_train(train: list[Sample], classes: ClassIndex, where: Path) -> None:
    for i, name in enumerate(classes.names):
        n = sum(s.label == i for s in train)
        if n < MIN_TRAIN_PER_CLASS:
            raise DataError(f"class '{name}' has {n} usable training image(s) in {where}: at least "
                            f"{MIN_TRAIN_PER_CLASS} are needed; add photos")


def default_name(data_root: Path) -> str:
    """A model's name from its photos' folder (`flowers12/train` -> flowers12)."""
    root = Path(data_root).resolve()
    return model_name_from(root.name if root.name.lower() not in GENERIC_NAMES else root.parent.name)


@dataclass
class Pixels:
    """Decoded images on disk: `eval` (N x crop x crop x 3, the variant's own resize and center crop, exactly what
    the bundle will run), and for training images `canvas` (N x S x S x 3, shorter side to S, center square: what
    the random crops are cut from). Rows of unreadable images are dropped."""

    eval: np.ndarray
    labels: np.ndarray
    ids: list[str]
    canvas: np.ndarray | None = None


def _store(folder: Path, name: str, n: int, size: int) -> np.ndarray:
    return np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=np.uint8, shape=(max(n, 1), size, size, 3))


def decode(samples: list[Sample], preprocessing: dict, folder: Path, name: str, canvas: int | None,
           progress: Progress = no_progress) -> Pixels:
    """Each image read once; unreadable ones skipped with one warning naming the first few."""
    crop = preprocessing["crop"]
    ev = _store(folder, f"{name}-eval", len(samples), crop)
    cv = _store(folder, f"{name}-canvas", len(samples), canvas) if canvas else None
    labels, ids, skipped, first = [], [], [], None
    advance = progress(f"read {name} images", len(samples))
    for s in samples:
        advance(1)
        try:
            img = s.load()
            px = preprocess.pixels(img, preprocessing)
        except ImageError as e:
            skipped.append(s.id)
            first = first or str(e)
            continue
        k = len(ids)
        ev[k] = px
        if cv is not None:
            cv[k] = preprocess.resize_crop(img, canvas, canvas, preprocessing["interpolation"])
        labels.append(s.label)
        ids.append(s.id)
    warn_skipped(skipped, len(samples), first, name)
    n = len(ids)
    return Pixels(ev[:n], np.asarray(labels, np.int64), ids, cv[:n] if cv is not None else None)


def workdir() -> tempfile.TemporaryDirectory:
    """Where the pixel stores live while training runs; removed at the end, Ctrl-C included."""
    return tempfile.TemporaryDirectory(prefix="edgekit-train-")

