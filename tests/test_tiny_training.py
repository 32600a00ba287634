"""edgekit train and INT8-aware fine-tuning on the tiny variant (tests/tiny.py): the real training loop, checkpoint,
report and tuning loop of every route, in seconds, on drawn images of three classes. Training lite0 on photos is
test_custom_classes.py's."""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest

import edgekit
from edgekit.analysis.choice import score
from tests import tiny
from tests.test_custom_classes import _drawn


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> tuple[Path, Path, Path]:
    """train/ (12 a class) and val/ (6 a class) drawn images, and the tiny ImageNet-free checkpoint to start from."""
    root = tmp_path_factory.mktemp("drawn")
    _drawn(root / "train", 12, 0)
    _drawn(root / "val", 6, 1)
    return root / "train", root / "val", tiny.checkpoint(root / "start.pt")


def _train(drawn, out: Path, **settings):
    with tiny.registered():
        return edgekit.train(drawn[0], "tiny", val=drawn[1], weights=drawn[2], out=out, **settings)


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_training_learns_the_drawn_classes_well_above_chance(drawn, tmp_path):
    r = _train(drawn, tmp_path / "shapes-tiny.pt", mode="finetune", epochs=10)
    t = r.record
    assert t["val_images"] == 18 and t["train_images"] == 36 and t["mode"] == "finetune"
    # chance is 6 of 18; 12 or more right by guessing has probability 0.004 (binomial, p = 1/3); this seed gives 13
    assert t["val_accuracy"] >= 12 / 18, t["val_accuracy"]
    report = json.loads(r.report.read_text())
    assert report["classes"] == ["daisy", "dandelion", "sunflower"] and report["val_accuracy"] == t["val_accuracy"]
    assert r.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_seed_gives_the_same_bytes_on_the_default_fine_tune_path(drawn, tmp_path):
    """The determinism the README states, on the default mode (fine-tuning the whole network) and this machine's
    thread count: the same data, options and seed give the same checkpoint; another seed another one."""
    a = _train(drawn, tmp_path / "a.pt", epochs=2, plot=False)
    b = _train(drawn, tmp_path / "b.pt", epochs=2, plot=False)
    c = _train(drawn, tmp_path / "c.pt", epochs=2, plot=False, seed=1)
    assert a.record["mode"] == "finetune"
    assert _digest(a.checkpoint) == _digest(b.checkpoint) != _digest(c.checkpoint)


@pytest.mark.parametrize("target", ["onnx", "arm64"])
def test_int8_aware_ships_the_model_that_scores_better_on_validation(drawn, tmp_path, target):
    """Each route's student trains through its own int8 arithmetic; the tuned model ships only if it scores at least
    as well as the post-training one on the validation images, and the manifest and model card keep both."""
    ckpt = _train(drawn, tmp_path / "shapes-tiny.pt", epochs=4, plot=False).checkpoint
    with tiny.registered(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = edgekit.build(None, target, weights=ckpt, calib=drawn[0], val=drawn[1], num_calib=36,
                              out=tmp_path / "dist", cache_dir=tmp_path / "cache", int8_aware=True)
    rec = built.manifest["int8_aware"]
    assert rec["epochs"] and rec["held_out_images"] > 0 and rec["kept"]  # tuning changed the model
    post, tuned = rec["validation"]["post_training"], rec["validation"]["tuned"]
    assert rec["shipped"] == (score(tuned) >= score(post))
    shipped = tuned if rec["shipped"] else post
    assert built.manifest["validation"]["top1_agreement"] == shipped["top1_agreement"]
    assert built.manifest["validation"]["logit_sqnr_db"] == pytest.approx(shipped["logit_sqnr_db"])
    card = (built.path / "README.md").read_text()
    assert "On the validation images the post-training model scored" in card


def test_the_automatic_split_keeps_copies_of_a_photo_on_one_side(tmp_path):
    """Copies of one photo (the same bytes under another name, or in another class's folder) never land on both
    sides of the automatic split; without copies the split is the plain seeded one (per class: a shuffle, the first
    share held out), so earlier checkpoints' figures stay reproducible."""
    import random
    import shutil

    from edgekit.training import data as data_mod

    root = tmp_path / "photos"
    _drawn(root, 10, 0)
    plain = data_mod.class_folders(root)
    for seed in range(3):  # the split as it was before copies were looked for
        want_val = []
        for i, name in enumerate(plain.classes.names):
            items = [s for s in plain.samples if s.label == i]
            random.Random(f"{seed}:{name}").shuffle(items)
            want_val += items[:max(1, round(0.3 * len(items)))]
        assert [s.id for s in data_mod.split(plain, 0.3, seed)[1]] == sorted(s.id for s in want_val)
    for c in ("daisy", "dandelion", "sunflower"):
        for i in range(4):
            shutil.copyfile(root / c / f"img{i:03d}.jpg", root / c / f"copy{i}.jpg")
    shutil.copyfile(root / "daisy" / "img005.jpg", root / "sunflower" / "stray.jpg")
    folders = data_mod.class_folders(root)
    for seed in range(10):
        train, val = data_mod.split(folders, 0.3, seed)
        assert not {s.digest for s in train} & {s.digest for s in val}, seed
        assert len(train) + len(val) == len(folders.samples) and val
