"""Image sets: find images in a directory, know their labels, and read them (device side: numpy + Pillow only).

Labels are found, in this order: a `labels.csv` at the directory root (`file,label`; label is a class name, index
or WordNet id), ImageNet WordNet ids in file names (`n01440764_tench.JPEG`), or one folder per class (named by the
class name, its index or, for ImageNet, its WordNet id).
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from edgekit.core.bundle import file_sha256
from edgekit.core.classes import ClassIndex
from edgekit.device.preprocess import open_rgb, pixels
from edgekit.errors import DataError, ImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
_WNID = re.compile(r"^(n\d{8})(?:_|$)")


@dataclass(frozen=True)
class Sample:
    """One image: a stable id (for digests and reports), how to load it, and its label if known."""

    id: str
    load: Callable[[], Image.Image]
    label: int | None = None
    digest: str = ""  # content hash of the source (file bytes, or the recipe that makes a synthetic view)


def list_images(root: Path) -> list[Path]:
    """Every image below root (recursive, through symlinked folders: a class folder is often a link to where the
    photos lie), in a stable order. Paths keep the names they were found under (a link's name is its class); a folder
    reached again (a link loop, two links to one place) is read once."""
    if not root.exists():
        raise DataError(f"image directory not found: {root}")
    if not root.is_dir():
        raise DataError(f"not a directory: {root}")
    found, seen = [], set()
    for d, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(d)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        found += [Path(d) / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES and (Path(d) / f).is_file()]
    return sorted(found)


def label_resolver(root: Path, classes: ClassIndex | None) -> tuple[Callable[[Path], int | None], set[str], set[str]]:
    """How each image's label is found, and the sets that collect the top-level folders matching no class / one."""
    unmatched: set[str] = set()
    matched: set[str] = set()

    def parse(value: str) -> int | None:
        value = value.strip()
        if classes is not None:
            return classes.label_of(value)
        return int(value) if value.isdigit() else None

    csv_path = root / "labels.csv"
    if csv_path.is_file():
        with open(csv_path, newline="") as f:
            rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
        if rows and rows[0][0].strip().lower() in ("file", "filename", "path", "image"):
            rows = rows[1:]
        table = {r[0].strip(): parse(r[1]) for r in rows if len(r) >= 2}
        return (lambda p: table.get(str(p.relative_to(root)), table.get(p.name))), unmatched, matched

    def from_path(p: Path) -> int | None:
        m = _WNID.match(p.name)
        if m and classes is not None and classes.label_of(m.group(1)) is not None:
            return classes.label_of(m.group(1))
        if p.parent == root:
            return None
        rel = p.relative_to(root).parts
        for folder in dict.fromkeys((rel[0], p.parent.name)):  # the top-level folder (as training reads it) first
            hit = parse(folder)
            if hit is not None:
                matched.add(rel[0])
                return hit
        unmatched.add(rel[0])
        return None

    return from_path, unmatched, matched


def directory_samples(root: Path, classes: ClassIndex | None = None, report_unmatched: bool = True) -> list[Sample]:
    """Every image below `root`, labelled by the model's class index: a `labels.csv`, WordNet ids in file names
    (ImageNet), or the top-level folder's name matched to a class name (case and separators aside; ImageNet: a
    WordNet id) or index. Folders that match no class are reported once (their images are unlabelled)."""
    root = Path(root)
    label_of, unmatched, matched = label_resolver(root, classes)
    out = [Sample(str(p.relative_to(root)), (lambda p=p: open_rgb(p)), label_of(p), file_sha256(p))
           for p in list_images(root)]
    # reported for a model of your own classes, or where some folders are labels and these are not (strays)
    if unmatched and report_unmatched and classes is not None and (not classes.imagenet or matched):
        names = sorted(unmatched)
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        some = ", ".join(classes.names[:4]) + (", ..." if len(classes) > 4 else "")
        warnings.warn(f"{len(names)} folder(s) under {root} match no class of the model ({', '.join(names[:5])}{more}): "
                      f"their images count as unlabelled; the model's classes are {some}", stacklevel=2)
    return out


def digest(samples: Iterable[Sample]) -> str:
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.id}\0{s.digest}\0{s.label}\n".encode())
    return h.hexdigest()


@dataclass
class Loaded:
    pixels: np.ndarray  # N x H x W x 3 uint8
    labels: np.ndarray  # N int64, -1 where unknown
    ids: list[str]
    skipped: list[str]  # ids of unreadable images


def warn_skipped(skipped: list[str], total: int, first_error: str | None, kind: str = "") -> None:
    """One warning for the unreadable images of a set, naming the first few (said where the set was read)."""
    if skipped:
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        warnings.warn(f"skipped {len(skipped)} unreadable {kind + ' ' if kind else ''}image(s) of {total}: "
                      f"{', '.join(skipped[:3])}{more} (first: {first_error})", stacklevel=3)


def load_pixels(samples: list[Sample], preprocessing: dict, progress: Callable[[Iterator], Iterator] | None = None,
                ) -> Loaded:
    """Decode and preprocess samples; unreadable images are skipped, and one warning names the first few."""
    out, labels, ids, skipped = [], [], [], []
    first_error = None
    it = iter(samples)
    for s in (progress(it) if progress else it):
        try:
            out.append(pixels(s.load(), preprocessing))
        except ImageError as e:
            skipped.append(s.id)
            first_error = first_error or str(e)
            continue
        labels.append(-1 if s.label is None else s.label)
        ids.append(s.id)
    warn_skipped(skipped, len(samples), first_error)
    crop = preprocessing["crop"]
    arr = np.stack(out) if out else np.zeros((0, crop, crop, 3), np.uint8)
    return Loaded(arr, np.asarray(labels, np.int64), ids, skipped)
