"""Calibration recipes a user writes (`--calib recipe.toml`, `--val recipe.toml`): folders and globs of their own
images, N per class, a seed, a holdout that never overlaps; the bundle records the recipe by name and digest, and
every bad recipe is one line. On images the test draws (no ../shared needed)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekit.builder.calibration import select
from edgekit.core.classes import ClassIndex
from edgekit.errors import CalibrationError

from .conftest import run_cli


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Class folders 0, 1, 2 (ImageNet's first class indices: folder names a 1000-class model matches), 6 images
    each for calibration, and a val/ folder of 4 per class."""
    root = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 4)):
        for c in range(3):
            d = root / split / str(c)
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (90, 120, 3), np.uint8)).save(d / f"{split}{c}_{i}.png")
    return root


def _recipe(root: Path, name: str, body: str) -> Path:
    p = root / f"{name}.toml"
    p.write_text(body)
    return p


def test_a_recipe_draws_n_per_class_with_its_seed_and_holds_its_holdout_out(photos, tmp_path):
    r = _recipe(tmp_path, "garden", 'name = "garden"\nimages = ["%s"]\nper_class = 4\nseed = 1\n'
                'holdout = ["%s/*/*.png"]\n' % (photos / "train", photos / "val"))
    names = ClassIndex(tuple(str(i) for i in range(1000)))
    a, b = select(str(r), 200, 100, None, names), select(str(r), 200, 100, None, names)
    assert [s.id for s in a.calib] == [s.id for s in b.calib]  # the seed decides
    assert sorted(s.label for s in a.calib) == [0] * 4 + [1] * 4 + [2] * 4
    assert len(a.val) == 12 and all(s.id.split("/")[0] in "012" and "val" in s.id for s in a.val)
    assert a.published_source.startswith("recipe 'garden' (sha256 ") and a.recipe["name"] == "garden"
    other = _recipe(tmp_path, "garden2", r.read_text().replace("seed = 1", "seed = 2"))
    assert [s.id for s in select(str(other), 200, 100, None, names).calib] != [s.id for s in a.calib]


def test_a_build_records_the_recipe_by_name_and_digest(photos, tmp_path, cache_dir):
    import hashlib

    r = _recipe(tmp_path, "mine", 'name = "mine"\nimages = ["%s"]\ncount = 12\nholdout = ["%s"]\n'
                % (photos / "train", photos / "val"))
    out = run_cli("build", "--calib", str(r), "--out", str(tmp_path / "dist"), "--cache-dir", str(cache_dir),
                  "--json", check=True)
    m = json.loads(out.stdout)
    digest = hashlib.sha256(r.read_bytes()).hexdigest()
    assert m["calibration"]["recipe"] == {"name": "mine", "sha256": digest}
    assert m["calibration"]["source"] == f"recipe 'mine' (sha256 {digest[:12]})"
    assert m["calibration"]["images_used"] == 12 and m["validation"]["images"] == 12
    card = (tmp_path / "dist" / m["name"] / "README.md").read_text()
    assert f"recipe 'mine' (sha256 {digest[:12]})" in card and str(tmp_path) not in card


@pytest.mark.parametrize("body,expected", [
    ('images = ["train"]\ncolour = "red"\n', "unknown key(s) colour"),
    ('images = ["no-such-folder"]\n', "is not a folder"),
    ('images = ["train/*/*.gif"]\n', "matches no image"),
    ('images = ["train"]\nper_class = 50\n', "per_class = 50, but class"),
    ('images = ["train"]\nholdout = ["train/0"]\n', "holdout shares 6 image(s)"),
    ('images = ["train"]\ncount = 0\n', "'count' must be 1 or more"),
    ('images = "train"\n', "'images' must be a list"),
    ('images = [\n', "not a readable TOML file"),
])
def test_a_bad_recipe_is_one_line_before_any_work(photos, tmp_path, body, expected):
    r = _recipe(photos, f"bad{abs(hash(body)) % 10000}", body)
    r2 = run_cli("build", "--calib", str(r), "--out", str(tmp_path / "dist"))
    last = r2.stderr.strip().splitlines()[-1]
    assert r2.returncode == 2 and last.startswith("error: ") and expected in last, r2.stderr
    assert not (tmp_path / "dist").exists()
    with pytest.raises(CalibrationError, match="recipe"):
        select(str(r), 200, 100, None, ClassIndex(tuple(str(i) for i in range(1000))))
