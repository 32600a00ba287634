"""Calibration recipes a user writes: a TOML file that `--calib` (or `--val`) names, in the format of
calibration/default.toml with `source = "files"`:

    name = "garden"                       # how the bundle names it (with the file's digest)
    images = ["photos/train", "more/*.jpg"]   # folders (recursive; their top-level folders are classes) or globs,
                                              # relative to the recipe file
    per_class = 20                        # N of each class (folders matched to the model's classes) ...
    count = 200                           # ... or N in all (default: --num-calib)
    seed = 0                              # which ones: the same recipe gives the same images
    holdout = ["photos/val"]              # optional: validation images (default: held out from `images`)
    val_count = 300                       # optional: most validation images (default: --num-val)

Every mistake (an unknown key, a folder that is not there, too few images of a class, calibration and validation
sharing an image) is one CalibrationError line naming the recipe.
"""
from __future__ import annotations

import glob
import hashlib
import random
from pathlib import Path

import tomllib

from edgekit.core.bundle import file_sha256
from edgekit.core.classes import ClassIndex
from edgekit.device.imagesets import IMAGE_SUFFIXES, Sample, directory_samples
from edgekit.device.preprocess import open_rgb
from edgekit.errors import CalibrationError

KEYS = {"name": str, "description": str, "source": str, "images": list, "count": int, "per_class": int,
        "seed": int, "holdout": list, "val_count": int}


def is_recipe_file(source: str | None) -> bool:
    return bool(source) and source.endswith(".toml") and Path(source).is_file()


def load(path: Path) -> dict:
    """The recipe at `path`, its keys checked; `digest` is the file's sha256."""
    what = f"recipe {path}"
    try:
        data = path.read_bytes()
        r = tomllib.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise CalibrationError(f"{what}: not a readable TOML file ({str(e).splitlines()[0]})") from None
    unknown = sorted(set(r) - set(KEYS))
    if unknown:
        raise CalibrationError(f"{what}: unknown key(s) {', '.join(unknown)}; a recipe takes {', '.join(KEYS)}")
    for key, kind in KEYS.items():
        if key in r and (not isinstance(r[key], kind) or isinstance(r[key], bool)):
            raise CalibrationError(f"{what}: '{key}' must be a {kind.__name__}")
    if r.get("source", "files") != "files":
        raise CalibrationError(f"{what}: source {r['source']!r}: a recipe of your own images has source = \"files\"")
    if not r.get("images") or not all(isinstance(x, str) for x in r["images"]):
        raise CalibrationError(f"{what}: 'images' must list folders or globs of images")
    if "count" in r and "per_class" in r:
        raise CalibrationError(f"{what}: give 'count' or 'per_class', not both")
    for key in ("count", "per_class", "val_count"):
        if key in r and r[key] < 1:
            raise CalibrationError(f"{what}: '{key}' must be 1 or more")
    r.setdefault("name", path.stem)
    r.setdefault("seed", 0)
    r["digest"] = hashlib.sha256(data).hexdigest()
    r["path"] = path
    return r


def _samples(r: dict, entries: list, classes: ClassIndex | None, what: str) -> list[Sample]:
    """Every image the entries name: folders through directory_samples (labelled by their class folders), globs file
    by file (labelled by the folder each image is in)."""
    base = r["path"].parent
    out: list[Sample] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise CalibrationError(f"recipe {r['name']}: '{what}' entries are folders or globs, got {entry!r}")
        p = Path(entry).expanduser()
        p = p if p.is_absolute() else base / p
        if p.is_dir():
            found = directory_samples(p, classes)
            out += [Sample(f"{p.name}/{s.id}", s.load, s.label, s.digest) for s in found]
            continue
        if not glob.has_magic(str(p)):
            raise CalibrationError(f"recipe {r['name']}: {what} entry {entry!r} is not a folder (looked in {p})")
        files = sorted(f for f in map(Path, glob.glob(str(p), recursive=True))
                       if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise CalibrationError(f"recipe {r['name']}: {what} entry {entry!r} matches no image")
        out += [Sample(f"{f.parent.name}/{f.name}", (lambda f=f: open_rgb(f)),
                       classes.label_of(f.parent.name) if classes is not None else None, file_sha256(f))
                for f in files]
    seen, unique = set(), []
    for s in out:  # a folder and a glob naming one image: once
        if s.digest not in seen:
            seen.add(s.digest)
            unique.append(s)
    return unique


def _pick(r: dict, samples: list[Sample], count: int | None, per_class: int | None, seed: int,
          classes: ClassIndex | None) -> tuple[list[Sample], list[Sample]]:
    """(picked, the rest), a seeded draw: `per_class` of each class, or `count` in all."""
    order = list(samples)
    random.Random(seed).shuffle(order)
    if per_class is None:
        return order[:count], order[count:]
    by_class: dict[int, list[Sample]] = {}
    for s in order:
        if s.label is None:
            raise CalibrationError(f"recipe {r['name']}: 'per_class' needs images in class folders; {s.id} is in "
                                   "none of the model's classes")
        by_class.setdefault(s.label, []).append(s)
    short = [(k, len(v)) for k, v in sorted(by_class.items()) if len(v) < per_class]
    if short:
        name = (lambda k: classes.names[k] if classes is not None and k < len(classes.names) else str(k))
        raise CalibrationError(f"recipe {r['name']}: per_class = {per_class}, but class "
                               + ", ".join(f"{name(k)} has {n}" for k, n in short[:3]) + " image(s)")
    picked = [s for k in sorted(by_class) for s in by_class[k][:per_class]]
    chosen = {id(s) for s in picked}
    return picked, [s for s in order if id(s) not in chosen]


def calibration(r: dict, num_calib: int, num_val: int, classes: ClassIndex | None
                ) -> tuple[list[Sample], list[Sample] | None]:
    """(calibration samples, validation samples or None when the recipe names no holdout and keeps none back)."""
    pool = _samples(r, r["images"], classes, "images")
    calib, rest = _pick(r, pool, r.get("count", num_calib), r.get("per_class"), r["seed"], classes)
    val_count = min(r.get("val_count", num_val), num_val)
    if "holdout" in r:
        held = _samples(r, r["holdout"], classes, "holdout")
        overlap = {s.digest for s in calib} & {s.digest for s in held}
        if overlap:
            raise CalibrationError(f"recipe {r['name']}: its holdout shares {len(overlap)} image(s) with the "
                                   "calibration images; validation images must be held out")
        val = _pick(r, held, val_count, None, r["seed"] + 1, classes)[0]
    else:
        val = rest[:val_count]
    return calib, sorted(val, key=lambda s: s.id)


def validation(r: dict, num_val: int, classes: ClassIndex | None) -> list[Sample]:
    """`--val RECIPE`: its images (its holdout, if it names one) are the validation set."""
    pool = _samples(r, r.get("holdout") or r["images"], classes, "holdout" if r.get("holdout") else "images")
    return sorted(_pick(r, pool, min(r.get("val_count", num_val), num_val), None, r["seed"] + 1, classes)[0],
                  key=lambda s: s.id)


def published(r: dict) -> str:
    """How a bundle names the recipe: its name and digest, never where it lay."""
    return f"recipe '{r['name']}' (sha256 {r['digest'][:12]})"
