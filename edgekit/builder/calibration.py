"""Calibration sets: a directory of images, or a recipe from the repository's `calibration/*.toml` (the embedded default).

`select(source, num_calib, num_val, val_dir)` returns disjoint calibration and validation samples and a digest of
each, so stages can be cached on what the images are, not where they came from.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import tomllib
from PIL import Image, ImageOps

from edgekit.builder import recipe_files
from edgekit.core.bundle import file_sha256, folder_label
from edgekit.core.classes import ClassIndex
from edgekit.core.datafiles import data_files
from edgekit.device.imagesets import Sample, digest, directory_samples
from edgekit.device.preprocess import open_rgb
from edgekit.errors import CalibrationError

SEED = 0
MIN_CALIB_IMAGES = 10  # the fewest a build calibrates on (Run.calib checks again after decoding)
MIN_VAL_IMAGES = 32  # fewer, and one image moves the agreement by more than 3 points
RECIPES = "calibration"  # the repository's calibration/ folder: one TOML file per recipe (core/datafiles.py)



@dataclass(frozen=True)
class Selection:
    source: str  # what the user named (recipe name or directory): for messages on this machine
    calib: list[Sample]
    val: list[Sample]
    val_source: str  # "held out from <source>" or the --val source, as a bundle names them (no build-machine path)
    published_source: str  # `source` as a bundle records it: a recipe's name, or a folder's (core.bundle.folder_label)
    val_caveat: str | None = None  # why the validation figures may mislead (a recipe's pictures are no photographs)
    val_from_recipe: bool = False  # views the recipe makes (--num-val sets how many), not images held out
    recipe: dict | None = None  # a recipe file's name and digest, for the manifest and the model card

    def warnings(self) -> list[str]:
        """What a user must know before trusting the build's figures (printed at build time, kept in the manifest)."""
        out = []
        if not self.val:
            out.append(f"no validation images: all {len(self.calib)} images of {self.published_source} went to "
                       "calibration, so "
                       "this bundle's accuracy is unmeasured and it carries no golden set; pass a smaller --num-calib "
                       "to hold images out, or --val DIR")
        elif len(self.val) < MIN_VAL_IMAGES:
            more = (f"pass --num-val {MIN_VAL_IMAGES} or more" if self.val_from_recipe else
                    "pass a smaller --num-calib to hold more out")
            out.append(f"only {len(self.val)} validation image(s) ({self.val_source}): one image is "
                       f"{100 / len(self.val):.1f} points of agreement; {more}, or --val DIR with {MIN_VAL_IMAGES} "
                       "or more")
        return out

    @property
    def calib_digest(self) -> str:
        return digest(self.calib)

    @property
    def val_digest(self) -> str:
        return digest(self.val)


def recipes() -> dict[str, dict]:
    out = {}
    for f in data_files(RECIPES):
        r = tomllib.loads(f.read_text())
        out[r["name"]] = r
    return out


def _skimage_views(recipe: dict, photos: list[str], count: int, seed_offset: int) -> list[Sample]:
    import skimage.data

    root = Path(skimage.data.__file__).parent
    rng = random.Random(recipe["seed"] + seed_offset)
    views = []
    for i in range(count):
        name = photos[i % len(photos)]
        area = rng.uniform(recipe["min_crop_area"], 1.0)
        aspect = rng.uniform(3 / 4, 4 / 3)
        fx, fy, flip = rng.random(), rng.random(), rng.random() < 0.5
        path = root / name
        if not path.is_file():
            raise CalibrationError(f"scikit-image does not ship {name}; reinstall scikit-image")

        def load(path=path, area=area, aspect=aspect, fx=fx, fy=fy, flip=flip) -> Image.Image:
            img = open_rgb(path)
            w, h = img.size
            cw = min(w, int(round((area * w * h * aspect) ** 0.5)))
            ch = min(h, int(round((area * w * h / aspect) ** 0.5)))
            x0, y0 = int(fx * (w - cw)), int(fy * (h - ch))
            img = img.crop((x0, y0, x0 + cw, y0 + ch))
            return ImageOps.mirror(img) if flip else img

        recipe_id = f"{name}|{area:.6f}|{aspect:.6f}|{fx:.6f}|{fy:.6f}|{flip}"
        file_hash = file_sha256(path)
        views.append(Sample(f"skimage:{recipe_id}", load, None, hashlib.sha256(
            (recipe_id + file_hash).encode()).hexdigest()))
    return views


def _split(samples: list[Sample], num_calib: int, num_val: int) -> tuple[list[Sample], list[Sample]]:
    """Seeded shuffle, then the first num_calib calibrate and the next num_val validate (held out)."""
    order = list(samples)
    random.Random(SEED).shuffle(order)
    return order[:num_calib], order[num_calib:num_calib + num_val]


def select(source: str | None, num_calib: int, num_val: int, val_dir: str | None,
           classes: ClassIndex | None = None) -> Selection:
    """Resolve --calib / --num-calib / --val into disjoint calibration and validation samples."""
    source = source or "default"
    if num_calib < 1:
        raise CalibrationError("--num-calib must be at least 1")
    if num_val < 0:
        raise CalibrationError(f"--num-val {num_val}: give the most validation images to use, 0 or more")
    known = recipes()
    path = Path(source)
    recipe = None
    if recipe_files.is_recipe_file(source):  # a recipe of the user's own images
        r = recipe_files.load(path)
        calib, val = recipe_files.calibration(r, num_calib, num_val, classes)
        val = [] if val_dir else val
        public, recipe = recipe_files.published(r), {"name": r["name"], "sha256": r["digest"]}
        val_source = f"held out by {public}"
        caveat, from_recipe = None, False
    elif source in known and not path.is_dir():
        spec = known[source]
        if spec["source"] != "skimage":
            raise CalibrationError(f"recipe {source}: unknown source kind '{spec['source']}'")
        calib = _skimage_views(spec, spec["images"], num_calib, 0)
        val = [] if val_dir else _skimage_views(spec, spec["holdout"], min(num_val, spec["val_views"]), 1)
        public = source
        val_source = f"held out from recipe '{source}' (other photographs)"
        caveat = None if val_dir else spec.get("caveat")
        from_recipe = not val_dir
    elif path.is_dir():
        samples = directory_samples(path, classes)
        if not samples:
            raise CalibrationError(f"no images (jpg/png/webp/bmp) found under {path}")
        if val_dir:
            calib, val = _split(samples, num_calib, 0)[0], []
        else:
            calib, val = _split(samples, num_calib, num_val)
        public = folder_label(path)
        val_source = f"held out from {public}"
        caveat, from_recipe = None, False
    else:
        raise CalibrationError(f"--calib {source!r} is neither a directory nor a recipe (recipes: "
                               f"{', '.join(sorted(known))}; or a recipe file, FILE.toml)")
    if val_dir:
        vpath = Path(val_dir)
        if recipe_files.is_recipe_file(val_dir):
            vr = recipe_files.load(vpath)
            val, val_source = recipe_files.validation(vr, num_val, classes), recipe_files.published(vr)
        elif not vpath.is_dir():
            raise CalibrationError(f"--val directory not found: {vpath}")
        else:
            val = directory_samples(vpath, classes)
            if len(val) > num_val:  # a seeded sample, not the first folders in name order
                val = sorted(_split(val, num_val, 0)[0], key=lambda s: s.id)
            val_source = folder_label(vpath)
        caveat, from_recipe = None, False
        overlap = {s.digest for s in calib} & {s.digest for s in val}
        if overlap:
            raise CalibrationError(f"--val shares {len(overlap)} image(s) with the calibration set; "
                                   "validation images must be held out")
    if len(calib) < MIN_CALIB_IMAGES:  # refused before anything is read or any warning about the rest
        raise CalibrationError(f"only {len(calib)} calibration image(s) in {source}; at least {MIN_CALIB_IMAGES} are "
                               "needed")
    return Selection(source, calib, val, val_source, public, caveat, from_recipe, recipe)
