"""Your own classes: `edgekit train` on a folder of photos, `edgekit build --weights` for x86 and arm64, and the class
names in predict, classify, bench and the bundle. On a few flowers12 photos per class (or, without ../shared,
images the test draws itself), with tiny trainings (seconds)."""
import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from edgekit.analysis.choice import score
from tests.conftest import REPO, SHARED, interruptible, run_cli

FLOWERS = SHARED / "data" / "flowers12"
CLASSES = ("daisy", "dandelion", "sunflower")
TRAIN_PER_CLASS, TEST_PER_CLASS = 10, 4


def _drawn(root: Path, per_class: int, seed: int) -> None:
    """Three classes a trunk tells apart at once: a red disc, a green bar, a blue ring, on noise."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            im = Image.fromarray(rng.integers(0, 80, (160, 200, 3), np.uint8))
            d = ImageDraw.Draw(im)
            x, y, r = rng.integers(60, 140), rng.integers(50, 110), rng.integers(25, 45)
            color = [(230, 40, 40), (40, 200, 60), (40, 80, 230)][c]
            if c == 0:
                d.ellipse((x - r, y - r, x + r, y + r), fill=color)
            elif c == 1:
                d.rectangle((x - r, 10, x + r // 2, 150), fill=color)
            else:
                d.ellipse((x - r, y - r, x + r, y + r), outline=color, width=10)
            im.save(root / name / f"img{i:03d}.jpg", quality=92)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    """train/ and test/ with three class folders: a few flowers12 photos each, or drawn images without ../shared."""
    root = tmp_path_factory.mktemp("photos")
    if FLOWERS.is_dir():
        for split, n in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
            for c in CLASSES:
                (root / split / c).mkdir(parents=True)
                for f in sorted((FLOWERS / split / c).iterdir())[:n]:
                    shutil.copyfile(f, root / split / c / f.name)
    else:
        _drawn(root / "train", TRAIN_PER_CLASS, 0)
        _drawn(root / "test", TEST_PER_CLASS, 1)
    return root / "train", root / "test"


@pytest.fixture(scope="module")
def trained(photos, tmp_path_factory) -> Path:
    """A fine-tuned lite0 (the last stage, one epoch after the head): the checkpoint the builds read."""
    out = tmp_path_factory.mktemp("ckpt") / "garden-lite0.pt"
    r = run_cli("train", "--data", str(photos[0]), "--val", str(photos[1]), "--mode", "finetune", "--stages", "1",
                "--epochs", "1", "--name", "garden", "--out", str(out), check=True)
    assert "checkpoint: " in r.stderr and "finetune epoch 1/1" in r.stderr
    return out


@pytest.fixture(scope="module")
def bundles(trained, photos, tmp_path_factory, cache_dir) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    r = run_cli("build", "--weights", str(trained), "--target", "x86,arm64", "--calib", str(photos[0]),
                "--num-calib", "20", "--val", str(photos[1]), "--out", str(out), "--cache-dir", str(cache_dir),
                check=True)
    assert "garden-lite0-x86-int8" in r.stderr
    return {t: out / f"garden-lite0-{t}-int8" for t in ("x86", "arm64")}


def test_train_writes_a_tensor_only_checkpoint_with_its_classes_and_a_report(trained, photos):
    ck = torch.load(trained, map_location="cpu", weights_only=True)
    meta = ck["edgekit"]
    assert meta["class_names"] == list(CLASSES) and meta["variant"] == "lite0" and meta["name"] == "garden"
    assert ck["state_dict"]["classifier.weight"].shape == (3, 1280)
    t = meta["training"]
    assert t["mode"] == "finetune" and t["epochs_run"] == 1 and t["best_epoch"] == 1
    assert t["val_images"] == 3 * TEST_PER_CLASS and t["train_images"] == 3 * TRAIN_PER_CLASS
    assert np.asarray(t["confusion"]).sum() == t["val_images"] and len(t["per_class"]) == 3
    assert 0 <= t["val_accuracy"] <= 1 and t["data_digest"] and meta["preprocessing"]["crop"] == 224
    assert str(photos[0].parent) not in json.dumps(meta)  # a checkpoint travels: no paths of this machine
    report = json.loads(trained.with_name("garden-lite0.report.json").read_text())
    assert report["val_accuracy"] == t["val_accuracy"] and report["seconds"] > 0
    png = trained.with_name("garden-lite0.report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_seed_gives_the_same_checkpoint_and_nothing_is_left_on_ctrl_c(photos, tmp_path, monkeypatch):
    """Same data, options and seed: the same bytes (head mode here: seconds). A fine-tune interrupted mid-epoch
    writes nothing (no checkpoint, no report, no pixel store left in the temporary directory)."""
    import edgekit
    from edgekit.training import TrainOptions

    digests = []
    for i in range(2):
        r = edgekit.train(photos[0], "lite0", out=tmp_path / f"a{i}.pt", mode="head", epochs=5, plot=False)
        digests.append(hashlib.sha256(r.checkpoint.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    other = edgekit.train(photos[0], "lite0", out=tmp_path / "b.pt", plot=False,
                          options=TrainOptions(mode="head", epochs=5, seed=1))
    assert hashlib.sha256(other.checkpoint.read_bytes()).hexdigest() != digests[0]

    def interrupt(label, total, unit="img"):
        def advance(n, info=None):
            if label.startswith("fine-tune"):
                raise KeyboardInterrupt
        return advance

    scratch = tmp_path / "scratch"  # this test's own temporary directory: nothing else writes there
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(KeyboardInterrupt):
        edgekit.train(photos[0], "lite0", out=tmp_path / "c.pt", options=TrainOptions(epochs=1, stages=1),
                      progress=interrupt)
    assert not list(tmp_path.glob("c.*")) and not list(scratch.iterdir())


def test_ctrl_c_in_edgekit_train_is_exit_130_and_writes_nothing(photos, tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "edgekit.cli", "train", "--data", str(photos[0]), "--epochs", "3",
                          "--stages", "1", "--out", str(tmp_path / "x.pt")], stderr=subprocess.PIPE, text=True,
                         cwd=REPO, preexec_fn=interruptible)
    try:
        lines = []
        for line in p.stderr:  # the head is fitted: fine-tuning runs
            lines.append(line)
            if "fine-tune epoch 1/3" in line:
                break
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        err = p.stderr.read()
        p.wait(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, "".join(lines) + err
    assert err.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_bundles_carry_the_classes_and_predict_and_classify_name_them(bundles, photos):
    import edgekit

    for target, b in bundles.items():
        m = json.loads((b / "manifest.json").read_text())
        assert m["class_names"] == list(CLASSES) and m["class_wnids"] == []
        assert m["classes"] == {"count": 3, "index": "custom", "model_name": "garden"}
        assert m["output"]["shape"][-1] == 3 and "daisy" in m["output"]["meaning"]
        assert (b / "labels.txt").read_text().split() == list(CLASSES)
        assert m["training"]["mode"] == "finetune" and m["weights"]["origin"] == "file garden-lite0.pt"
        v = m["validation"]
        assert v["images"] == 3 * TEST_PER_CLASS and "top1_fp32" in v and "top1_int8" in v
        assert [r["class"] for r in v["per_class"]] == list(CLASSES)
        card = (b / "README.md").read_text()
        assert "`daisy`, `dandelion`, `sunflower`" in card and "| daisy |" in card
        photo = next((photos[1] / "sunflower").iterdir())
        preds = edgekit.load(b).classify(photo, top=3)
        assert {p.name for p in preds} == set(CLASSES) and all(p.wnid is None for p in preds)
        r = run_cli("predict", str(b), str(photo), "--json", check=True)
        row = json.loads(r.stdout.splitlines()[0])
        assert row["predictions"][0]["name"] in CLASSES and row["predictions"][0]["wnid"] is None
        r = run_cli("predict", str(b), str(photo), check=True)
        assert any(c in r.stdout for c in CLASSES) and not re.search(r"\bn\d{8}\b", r.stdout)


def test_a_checkpoint_of_train_int8_aware_builds_int8_aware_unless_told_not_to(photos, tmp_path):
    """`edgekit train --int8-aware` records in the checkpoint that its builds fine-tune for their target's own int8;
    a build not told either way follows it, --no-int8-aware (int8_aware=False) builds the post-training model with
    the same FP32 twin. The command line's record on lite0 (head, one epoch), the builds on the tiny variant."""
    import edgekit
    from tests import tiny

    r = run_cli("train", "--data", str(photos[0]), "--val", str(photos[1]), "--mode", "head", "--epochs", "1",
                "--int8-aware", "--out", str(tmp_path / "asks.pt"), check=True)
    assert "its builds fine-tune for int8" in r.stderr
    assert torch.load(tmp_path / "asks.pt", weights_only=True)["edgekit"]["build"] == {"int8_aware": True}
    with tiny.registered():
        ckpt = edgekit.train(photos[0], "tiny", val=photos[1], weights=tiny.checkpoint(tmp_path / "start.pt"),
                             out=tmp_path / "garden-tiny.pt", mode="head", epochs=3, plot=False,
                             int8_aware=True).checkpoint
        common = dict(weights=ckpt, calib=photos[0], val=photos[1], num_calib=20, cache_dir=tmp_path / "cache")
        asked = edgekit.build(None, "onnx", out=tmp_path / "a", **common)
        told = edgekit.build(None, "onnx", out=tmp_path / "b", int8_aware=False, **common)
    rec = asked.manifest["int8_aware"]
    assert rec["train_images"] + rec["held_out_images"] == 20 and "int8-aware" in asked.manifest["timings"]
    v = rec.get("validation") or {}  # a kept model ships only if it scores as well on the validation photos
    assert rec["shipped"] == (rec["kept"] and score(v["tuned"]) >= score(v["post_training"]))
    assert told.manifest["int8_aware"] is None and "int8-aware" not in told.manifest["timings"]
    fp32 = told.manifest["artifacts"]["fp32"]
    assert (told.path / fp32).read_bytes() == (asked.path / fp32).read_bytes()

def test_bench_images_takes_labels_from_class_folders(bundles, photos, tmp_path):
    r = run_cli("bench", str(bundles["x86"]), "--images", str(photos[1]), "--runs", "2", "--threads", "1",
                "--json", str(tmp_path / "b.json"), env={"EDGEKIT_HISTORY": str(tmp_path / "h.jsonl")}, check=True)
    im = json.loads((tmp_path / "b.json").read_text())["images"]
    assert im["labelled_images"] == 3 * TEST_PER_CLASS and "top1_int8" in im
    assert [row["class"] for row in im["per_class"]] == list(CLASSES)
    assert "top-1 FP32" in r.stderr + r.stdout


def test_a_plain_state_dict_builds_with_labels(trained, photos, tmp_path, cache_dir):
    sd = torch.load(trained, weights_only=True)["state_dict"]
    torch.save(sd, tmp_path / "timm-style.pth")
    (tmp_path / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    r = run_cli("build", "--weights", str(tmp_path / "timm-style.pth"), "--labels", str(tmp_path / "labels.txt"),
                "--target", "onnx", "--calib", str(photos[0]), "--num-calib", "16", "--val", str(photos[1]),
                "--out", str(tmp_path / "d"), "--cache-dir", str(cache_dir), "--json", check=True)
    m = json.loads(r.stdout)
    assert m["name"] == "timm-style-lite0-onnx-int8" and m["class_names"] == list(CLASSES)
    assert m["validation"]["labelled_images"] == 3 * TEST_PER_CLASS and m["training"] is None


def test_edgekit_build_from_python_is_the_same_build(trained, photos, tmp_path, cache_dir):
    import edgekit
    from edgekit.errors import WeightsError

    b = edgekit.build(target="onnx", weights=trained, calib=photos[0], val=photos[1], num_calib=16,
                      out=tmp_path / "d", cache_dir=cache_dir)
    assert b.path == tmp_path / "d" / "garden-lite0-onnx-int8" and b.manifest["class_names"] == list(CLASSES)
    assert b.manifest["variant"]["name"] == "lite0" and b.manifest["variant"]["num_classes"] == 3
    with pytest.raises(WeightsError, match="trained from lite0, not lite2"):
        edgekit.build("Lite2", "onnx", weights=trained, calib=photos[0], out=tmp_path / "e", cache_dir=cache_dir)
    assert not (tmp_path / "e").exists()


def _error(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    return lines[-1]


def test_bad_training_data_is_one_line_and_writes_nothing(photos, tmp_path):
    one = tmp_path / "one"
    shutil.copytree(photos[0] / "daisy", one / "daisy")
    few = tmp_path / "few"
    shutil.copytree(photos[0], few)
    for f in sorted((few / "sunflower").iterdir())[2:]:
        f.unlink()
    other = tmp_path / "other"
    shutil.copytree(photos[1], other)
    (other / "daisy").rename(other / "tulip")
    cases = [
        (["--data", str(one)], "a classifier needs at least two classes"),
        (["--data", str(tmp_path / "nowhere")], "not a directory"),
        (["--data", str(few)], "class 'sunflower' has 2 image(s)"),
        (["--data", str(photos[0]), "--val", str(other)], "no folder for daisy; folders that are no class of --data: tulip"),
        (["--data", str(photos[0]), "--mode", "everything"], "--mode"),
        (["--data", str(photos[0]), "--stages", "last"], "--stages 'last'"),
        (["--data", str(photos[0]), "--epochs", "0"], "--epochs 0: give 1 or more"),
        (["--data", str(photos[0]), "--variant", "lite3"], "lite3 has no packaged weights to start from: pass --weights"),
    ]
    for args, says in cases:
        r = run_cli("train", *args, "--out", str(tmp_path / "out" / "m.pt"))
        assert says in _error(r), (args, r.stderr)
    assert not (tmp_path / "out").exists()
    (tmp_path / "exists.pt").write_bytes(b"keep")
    r = run_cli("train", "--data", str(photos[0]), "--out", str(tmp_path / "exists.pt"))
    assert "exists: pass --force" in _error(r) and (tmp_path / "exists.pt").read_bytes() == b"keep"


def test_unreadable_training_images_are_one_warning_and_training_goes_on(photos, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(photos[0], data)
    for i in range(4):
        (data / "daisy" / f"broken{i}.jpg").write_bytes(b"not a jpeg")
    r = run_cli("train", "--data", str(data), "--val", str(photos[1]), "--mode", "head", "--epochs", "2", "--out",
                str(tmp_path / "m.pt"), check=True)
    warned = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: skipped")]
    assert len(warned) == 1 and "4 unreadable" in warned[0] and "daisy/broken0.jpg" in warned[0], r.stderr
    assert (tmp_path / "m.pt").is_file()


def test_bad_checkpoints_and_labels_are_one_line_each(trained, photos, tmp_path, cache_dir):
    sd = torch.load(trained, weights_only=True)["state_dict"]
    torch.save(sd, tmp_path / "plain.pth")
    (tmp_path / "two.txt").write_text("daisy\ndandelion\n")
    (tmp_path / "dup.txt").write_text("daisy\ndaisy\nsunflower\n")
    (tmp_path / "gap.txt").write_text("daisy\n\nsunflower\n")
    common = ["--num-calib", "10", "--calib", str(photos[0]), "--out", str(tmp_path / "d"), "--cache-dir",
              str(cache_dir)]
    cases = [
        (["--weights", str(tmp_path / "plain.pth"), "--labels", str(tmp_path / "two.txt")],
         "has 3 outputs but labels file two.txt names 2 classes"),
        (["--weights", str(tmp_path / "plain.pth"), "--labels", str(tmp_path / "dup.txt")], "appear more than once"),
        (["--weights", str(tmp_path / "plain.pth"), "--labels", str(tmp_path / "gap.txt")], "line 2 is empty"),
        (["--weights", str(tmp_path / "plain.pth")], "has 3 outputs, not ImageNet's 1000: pass --labels FILE"),
        (["--weights", str(trained), "--variant", "lite1"], "was trained from lite0, not lite1"),
        (["--labels", str(tmp_path / "two.txt")], "give the checkpoint with --weights"),
        (["--weights", str(trained), "--name", "../evil"], "name '../evil'"),
    ]
    for args, says in cases:
        r = run_cli("build", *args, *common)
        assert says in _error(r), (args, r.stderr)
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_a_bundle_of_other_weights_is_not_replaced_without_force(trained, bundles, photos, cache_dir, tmp_path):
    out = tmp_path / "d"
    shutil.copytree(bundles["x86"], out / "garden-lite0-x86-int8")
    before = (out / "garden-lite0-x86-int8" / "manifest.json").read_bytes()
    src = torch.load(trained, weights_only=True)  # a second checkpoint of the same name: one weight changed
    src["state_dict"]["classifier.bias"] = src["state_dict"]["classifier.bias"] + 0.5
    other = tmp_path / "other.pt"
    torch.save(src, other)
    args = ["build", "--weights", str(other), "--target", "x86", "--calib", str(photos[0]), "--num-calib", "10",
            "--val", str(photos[1]), "--out", str(out), "--cache-dir", str(cache_dir)]
    r = run_cli(*args)
    assert "holds a bundle of other weights or classes; pass --force" in _error(r)
    assert (out / "garden-lite0-x86-int8" / "manifest.json").read_bytes() == before
    run_cli(*args, "--force", check=True)
    m = json.loads((out / "garden-lite0-x86-int8" / "manifest.json").read_text())
    assert m["weights"]["sha256"] == hashlib.sha256(other.read_bytes()).hexdigest()


def test_a_model_that_does_not_follow_fp32_is_a_warning():
    from edgekit.builder.validate import follows_fp32

    assert follows_fp32({"images": 32, "logit_sqnr_db": 24.0, "top1_agreement": 0.99}) == []
    w = follows_fp32({"images": 32, "logit_sqnr_db": 0.0, "top1_agreement": 0.4, "mean_kl": 0.6})
    assert len(w) == 1 and "does not follow the FP32 one: logit SQNR 0.0 dB" in w[0]


def test_folder_names_match_class_names_and_unmatched_folders_are_reported(tmp_path):
    import warnings

    from edgekit.core.classes import ClassIndex
    from edgekit.device.imagesets import directory_samples

    for rel in ("Daisy/a.png", "lily_valley/b.png", "2/c.png", "roses/d.png"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(p)
    ci = ClassIndex(("daisy", "lily-valley", "tulip"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        labels = {s.id: s.label for s in directory_samples(tmp_path, ci)}
    assert labels == {"Daisy/a.png": 0, "lily_valley/b.png": 1, "2/c.png": 2, "roses/d.png": None}
    assert len(caught) == 1 and "1 folder(s)" in str(caught[0].message) and "roses" in str(caught[0].message)
