"""Hostile inputs (the hostile-inputs issue, items 1, 2, 4 and part of 5): an image of an
absurd shape cannot make preprocessing allocate gigabytes, an image over the pixel limit is refused before it is
decoded, 16-bit PNGs are scaled (not clipped) and EXIF orientation is applied, identically everywhere; a signature
binds the name and build it vouches for, a board does not go back to an older signed build unasked, and keys are
created exclusively and read with a size limit."""
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekit.device import preprocess
from edgekit.device.imagesets import directory_samples, load_pixels
from edgekit.errors import ImageError
from tests.conftest import REPO, run_cli

PREP = {"resize": 256, "crop": 224, "interpolation": "bicubic"}


def _peak_rss_mb(code: str) -> tuple[float, str]:
    """Run `code` in a fresh interpreter; its peak resident memory (MB) and what it printed."""
    wrapped = code + "\nimport resource; print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    r = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    rss = float(r.stdout.strip().splitlines()[-1].split()[1])
    return rss, r.stdout


@pytest.mark.parametrize("size", [(1, 60000), (60000, 1), (3, 40000)])
def test_an_absurd_shape_is_preprocessed_in_bounded_memory(tmp_path, size):
    Image.new("RGB", size, (200, 30, 30)).save(tmp_path / "thin.png")
    code = textwrap.dedent(f"""
        from edgekit.device import preprocess
        px = preprocess.pixels(preprocess.open_rgb({str(tmp_path / 'thin.png')!r}), {PREP!r})
        print(px.shape, px.dtype, int(px[..., 0].mean()))
    """)
    baseline, _ = _peak_rss_mb("from edgekit.device import preprocess")
    rss, out = _peak_rss_mb(code)
    assert "(224, 224, 3) uint8 200" in out
    assert rss - baseline < 64, (rss, baseline)  # it was 5-7 GB (256 x 15,360,000 RGB)


def test_preprocessing_of_ordinary_photos_is_unchanged():
    """The bounded path is taken only for shapes no photograph has: a 4:1 panorama still resizes whole."""
    rng = np.random.default_rng(0)
    for w, h in ((640, 480), (480, 640), (1024, 256), (256, 1024), (300, 300)):
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8))
        nw, nh = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
        full = img.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = int(round((nw - 224) / 2.0)), int(round((nh - 224) / 2.0))
        want = np.asarray(full.crop((left, top, left + 224, top + 224)))
        assert np.array_equal(preprocess.pixels(img, PREP), want), (w, h)


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(preprocess, "MAX_PIXELS", 10_000)
    Image.new("RGB", (200, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match=r"200x100.*more than edgekit reads"):
        preprocess.open_rgb(tmp_path / "big.png")
    Image.new("RGB", (100, 100)).save(tmp_path / "ok.png")
    assert preprocess.open_rgb(tmp_path / "ok.png").size == (100, 100)


def test_a_16_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0..65520
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    img = preprocess.open_rgb(tmp_path / "deep.png")
    a = np.asarray(img)
    assert img.mode == "RGB" and a.max() >= 250 and a.min() == 0
    assert np.array_equal(a[..., 0], np.round(ramp / 257.0).astype(np.uint8))  # the top byte, rounded


def test_exif_orientation_is_applied_wherever_an_image_is_read(tmp_path):
    import edgekit.device.classifier as classifier

    upright = Image.new("RGB", (60, 40), (0, 0, 0))
    upright.paste((255, 255, 255), (0, 0, 60, 10))  # a white band along the top
    stored = upright.rotate(90, expand=True)  # stored sideways, with the tag that turns it back
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    seen = preprocess.open_rgb(tmp_path / "phone.jpg")
    assert seen.size == (60, 40) and np.asarray(seen)[:5].mean() > 200 and np.asarray(seen)[-5:].mean() < 50
    with Image.open(tmp_path / "phone.jpg") as im:  # a PIL image handed to classify is turned the same way
        assert np.array_equal(np.asarray(classifier.to_pil(im)), np.asarray(seen))
    loaded = load_pixels(directory_samples(tmp_path), {"resize": 40, "crop": 40, "interpolation": "bilinear"})
    assert np.array_equal(loaded.pixels[0], preprocess.pixels(seen, {"resize": 40, "crop": 40,
                                                                     "interpolation": "bilinear"}))


def test_a_schema_version_of_the_wrong_type_says_so(tmp_path):
    from edgekit.core import bundle
    from edgekit.errors import ManifestError

    (tmp_path / "manifest.json").write_text('{"schema_version": "1", "files": {}}')
    with pytest.raises(ManifestError, match=r"schema version '1' is not supported \(this edgekit reads 1\)"):
        bundle.read(tmp_path)


# --- signatures bind what was signed; keys are made and read safely (item 2, item 5) ---------------------------------

def _signed_store(bundle, tmp_path, key):
    store = tmp_path / "store"
    run_cli("publish", str(bundle), "--to", str(store), "--sign", str(key), check=True)
    return store / bundle.name


def _newer_copy(bundle, where):
    """The same bundle as a later build: its manifest says so (a new manifest digest, the same files)."""
    import datetime
    import json
    import shutil

    newer = where / bundle.name
    shutil.copytree(bundle, newer)
    m = json.loads((newer / "manifest.json").read_text())
    m["created"] = (datetime.datetime.fromisoformat(m["created"]) + datetime.timedelta(days=1)).isoformat()
    (newer / "manifest.json").write_text(json.dumps(m, indent=2))
    return newer


def test_a_signed_bundle_served_under_another_name_is_refused(tiny_bundle, tmp_path):
    import shutil

    run_cli("keygen", str(tmp_path / "key"), check=True)
    src = _signed_store(tiny_bundle, tmp_path, tmp_path / "key")
    # someone who can write to the store puts the signed bundle (and its record) where another is asked for
    other = "cats-tiny-x86-int8"
    shutil.copytree(src, src.parent / other)
    shutil.copyfile(src.parent / f"{tiny_bundle.name}.edgekit.json", src.parent / f"{other}.edgekit.json")
    r = run_cli("pull", str(src.parent / other), "--to", str(tmp_path / "got"), "--verify-key",
                str(tmp_path / "key.pub"))
    assert r.returncode == 2 and f"signed as '{tiny_bundle.name}', not as '{other}'" in r.stderr, r.stderr
    assert not (tmp_path / "got").exists()
    # asked by its own name, it is the bundle it says it is
    run_cli("pull", str(src), "--to", str(tmp_path / "got"), "--verify-key", str(tmp_path / "key.pub"), check=True)


def test_an_older_signed_build_does_not_replace_a_newer_one_without_allow_downgrade(tiny_bundle, tmp_path):
    run_cli("keygen", str(tmp_path / "key"), check=True)
    old = _signed_store(tiny_bundle, tmp_path, tmp_path / "key")
    new_store = tmp_path / "new-store"
    run_cli("publish", str(_newer_copy(tiny_bundle, tmp_path / "built")), "--to", str(new_store), "--sign",
            str(tmp_path / "key"), check=True)
    board, key = tmp_path / "board", str(tmp_path / "key.pub")
    run_cli("pull", str(new_store / old.name), "--to", str(board), "--verify-key", key, check=True)
    newer = (board / old.name / "manifest.json").read_bytes()
    r = run_cli("pull", str(old), "--to", str(board), "--force", "--verify-key", key)  # a store rolled back
    assert r.returncode == 2 and "is older than the one verified into" in r.stderr and "--allow-downgrade" in r.stderr
    assert (board / old.name / "manifest.json").read_bytes() == newer  # nothing replaced
    run_cli("pull", str(old), "--to", str(board), "--force", "--verify-key", key, "--allow-downgrade", check=True)
    assert (board / old.name / "manifest.json").read_bytes() == (old / "manifest.json").read_bytes()


def test_a_damaged_record_of_signed_pulls_fails_closed(tiny_bundle, tmp_path):
    """The record of the newest signed build pulled into a directory is what stops a rollback: a damaged one is
    refused, never taken for "nothing pulled yet"; deleting it is the user's explicit way to start afresh."""
    run_cli("keygen", str(tmp_path / "key"), check=True)
    src = _signed_store(tiny_bundle, tmp_path, tmp_path / "key")
    board, key = tmp_path / "board", str(tmp_path / "key.pub")
    run_cli("pull", str(src), "--to", str(board), "--verify-key", key, check=True)
    record = board / ".edgekit-signed-pulls.json"
    assert tiny_bundle.name in record.read_text()
    for damage in ("{not json", "[]", '{"%s": "2020"}' % tiny_bundle.name):
        record.write_text(damage)
        r = run_cli("pull", str(src), "--to", str(board), "--force", "--verify-key", key)
        assert r.returncode == 2 and f"{record} is damaged" in r.stderr and "delete it" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and record.read_text() == damage  # left for the user to see
    record.unlink()
    run_cli("pull", str(src), "--to", str(board), "--force", "--verify-key", key, check=True)


def test_two_signed_pulls_at_once_leave_the_newer_build(tiny_bundle, tmp_path, monkeypatch):
    """An older and a newer signed build pulled into one directory at once: the check, the placing and the record
    happen under one lock, so the older one cannot pass its check first and be placed last."""
    import threading
    import time

    from edgekit import publish as store
    from edgekit.publish import directory

    run_cli("keygen", str(tmp_path / "key"), check=True)
    old = _signed_store(tiny_bundle, tmp_path, tmp_path / "key")
    new_store = tmp_path / "new-store"
    run_cli("publish", str(_newer_copy(tiny_bundle, tmp_path / "built")), "--to", str(new_store), "--sign",
            str(tmp_path / "key"), check=True)
    board, key = tmp_path / "board", tmp_path / "key.pub"
    real_place = directory.place
    old_manifest = (old / "manifest.json").read_bytes()

    placing_old = threading.Event()

    def slow_for_the_old(staged, to, force):
        if (staged / "manifest.json").read_bytes() == old_manifest:
            placing_old.set()
            time.sleep(1.0)  # the older pull, past its check, is slow to place its files
        return real_place(staged, to, force)

    monkeypatch.setattr(directory, "place", slow_for_the_old)
    errors = []

    def pull(src):
        try:
            store.pull(str(src), board, True, False, key, False)
        except Exception as e:  # noqa: BLE001  (collected and asserted below)
            errors.append(e)

    first = threading.Thread(target=pull, args=(old,))
    first.start()
    assert placing_old.wait(60)  # the older pull has passed its check and is placing
    pull(new_store / old.name)
    first.join()
    assert not errors, errors
    assert (board / old.name / "manifest.json").read_bytes() == (new_store / old.name / "manifest.json").read_bytes()


def test_a_signature_over_the_digest_alone_is_refused_clearly(tiny_bundle, tmp_path):
    import base64
    import json

    from edgekit.core import bundle as manifest
    from edgekit.publish import signing

    run_cli("keygen", str(tmp_path / "key"), check=True)
    src = _signed_store(tiny_bundle, tmp_path, tmp_path / "key")
    record_path = src.parent / f"{tiny_bundle.name}.edgekit.json"
    record = json.loads(record_path.read_text())
    key = signing._load(tmp_path / "key", private=True)  # what an edgekit before statements signed
    digest = manifest.file_sha256(src / "manifest.json")
    old = key.sign(f"edgekit bundle manifest sha256:{digest}".encode())
    record["signature"] = {"algorithm": "ed25519", "key_id": record["signature"]["key_id"],
                           "signature": base64.b64encode(old).decode()}
    record_path.write_text(json.dumps(record))
    r = run_cli("pull", str(src), "--to", str(tmp_path / "got"), "--verify-key", str(tmp_path / "key.pub"))
    assert r.returncode == 2 and "does not say which bundle it vouches for" in r.stderr and "--sign" in r.stderr


def test_keygen_creates_its_files_itself_and_keys_are_read_with_a_limit(tmp_path, monkeypatch):
    import os
    import time
    import warnings

    from edgekit.errors import PublishError
    from edgekit.publish import signing

    key = tmp_path / "key"
    planted = tmp_path / f".tmp-key-{os.getpid()}"  # what an attacker left where keygen writes first
    planted.write_text("someone else's file")
    planted.chmod(0o666)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (tmp_path / f".tmp-key.pub-{os.getpid()}").symlink_to(outside)
    signing.keygen(key)
    assert key.stat().st_mode & 0o777 == 0o600 and outside.read_text() == "keep me"
    assert b"PRIVATE KEY" in key.read_bytes() and not planted.exists()
    # /dev/zero as a key: refused at once, without reading it all
    t = time.monotonic()
    with pytest.raises(PublishError, match="not a key file"):
        signing.public_key_id(Path("/dev/zero"))
    big = tmp_path / "big.pub"
    big.write_bytes(b"A" * (signing.MAX_KEY_BYTES + 10))
    with pytest.raises(PublishError, match="is not a key"):
        signing.public_key_id(big)
    assert time.monotonic() - t < 5
    # a signing key others can read is used, with a warning
    key.chmod(0o644)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        signing.sign(key, {"type": signing.STATEMENT})
    assert any("readable by others" in str(x.message) for x in w)


def test_verify_key_dev_zero_is_one_line_before_anything_is_copied(tiny_bundle, tmp_path):
    run_cli("keygen", str(tmp_path / "key"), check=True)
    src = _signed_store(tiny_bundle, tmp_path, tmp_path / "key")
    r = run_cli("pull", str(src), "--to", str(tmp_path / "got"), "--verify-key", "/dev/zero")
    assert r.returncode == 2 and "not a key file" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "got").exists()


# --- a bundle runs only what its checksums cover, and the bytes it checked (item 3) ---------------------------------

def _copy(bundle, tmp_path, edit=None):
    import json
    import shutil

    dst = tmp_path / "b" / bundle.name
    shutil.copytree(bundle, dst)
    if edit is not None:
        m = json.loads((dst / "manifest.json").read_text())
        m = edit(m)
        (dst / "manifest.json").write_text(m if isinstance(m, str) else json.dumps(m))
    return dst


def _files(m, extra):
    m["files"].update(extra)
    return m


@pytest.mark.parametrize("edit,expected", [
    (lambda m: _files(m, {"../../outside/secret.txt": "0" * 64}), "not a file of the bundle's own directory"),
    (lambda m: _files(m, {"/etc/passwd": "0" * 64}), "not a file of the bundle's own directory"),
    (lambda m: {**m, "artifacts": {**m["artifacts"], "int8": "/etc/passwd"}}, "not among the bundle's checksummed"),
    (lambda m: {**m, "artifacts": {**m["artifacts"], "int8": "labels.txt.bak"}}, "not among the bundle's checksummed"),
    (lambda m: [m], "a JSON list, not an object"),
    (lambda m: {**m, "files": list(m["files"])}, "'files' is not a map"),
    (lambda m: {k: v for k, v in m.items() if k != "target"}, "'target' is missing"),
    (lambda m: {**m, "class_names": m["class_names"][:2]}, "2 class names for 3 outputs"),
    (lambda m: {**m, "files": {**m["files"], "labels.txt": 7}}, "no sha256 digest"),
    (lambda m: "[" * 100000 + "]" * 100000, "is not valid JSON"),
    # every field the device reads (issue 32): an empty or wrong input contract is one line, not "a bug in edgekit"
    (lambda m: {**m, "input": {}}, "'input' has layout None"),
    (lambda m: {**m, "input": {**m["input"], "mean": [0, 0]}}, "'input' gives no mean of three numbers"),
    (lambda m: {**m, "input": {**m["input"], "std": [1, 0, 1]}}, "'input' has a std of 0"),
    (lambda m: {**m, "input": {**m["input"], "dtype": "float16"}}, "'input' has dtype 'float16'"),
    (lambda m: {**m, "input": {**m["input"], "layout": "CHW"}}, "'input' has layout 'CHW'"),
    (lambda m: {**m, "input": {**m["input"], "dtype": "int8", "quantization": None}},
     "'input' takes int8 without a quantization"),
    (lambda m: {**m, "input": {**m["input"], "dtype": "int8", "quantization": {"scale": 0, "zero_point": 0}}},
     "without a positive scale"),
    (lambda m: {**m, "fp32_input": []}, "'fp32_input' is not an object"),
    (lambda m: {**m, "preprocessing": {**m["preprocessing"], "interpolation": "lanczos9"}},
     "interpolation 'lanczos9'"),
    (lambda m: {**m, "preprocessing": {**m["preprocessing"], "crop": 0}}, "no resize and crop sizes"),
    (lambda m: {**m, "variant": {"name": "lite0"}}, "'variant' gives no name and no positive count"),
    (lambda m: {k: v for k, v in m.items() if k != "variant"}, "'variant' gives no name"),
    (lambda m: {**m, "variant": {**m["variant"], "macs": float("inf")}}, "'variant' gives no name"),
    (lambda m: {**m, "target": {"runtime": m["target"]["runtime"]}}, "'target' names no runtime or no name"),
    (lambda m: {**m, "class_wnids": ["n01"]}, "1 WordNet ids for 3 class names"),
    (lambda m: {**m, "input": {**m["input"], "shape": [1, 3, True, 48]}}, "not four positive sizes"),
])
def test_a_malformed_or_escaping_manifest_is_one_line_exit_2(tiny_bundle, tmp_path, edit, expected):
    import edgekit
    from edgekit.errors import ManifestError

    b = _copy(tiny_bundle, tmp_path, edit)
    with pytest.raises(ManifestError, match=expected):
        edgekit.load(b)
    r = run_cli("predict", str(b), str(b / "example.png"))
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ") and expected in r.stderr, \
        r.stderr
    assert "Traceback" not in r.stderr and "bug in edgekit" not in r.stderr


def test_every_interpolation_a_manifest_may_name_is_one_the_device_has():
    from edgekit.core import contract
    from edgekit.device import preprocess

    assert set(contract.INTERPOLATIONS) == set(preprocess._INTERP)


def test_a_symlinked_bundle_file_is_refused(tiny_bundle, tmp_path):
    import edgekit
    from edgekit.errors import ManifestError

    b = _copy(tiny_bundle, tmp_path)
    target = tmp_path / "elsewhere.txt"
    target.write_bytes((b / "labels.txt").read_bytes())  # the same bytes: only the link is wrong
    (b / "labels.txt").unlink()
    (b / "labels.txt").symlink_to(target)
    with pytest.raises(ManifestError, match="symbolic link"):
        edgekit.load(b)


def test_load_runs_the_bytes_it_verified_not_a_file_swapped_after(tiny_bundle, tmp_path, monkeypatch):
    """The artifact is replaced right after the manifest's checks passed (the race a tester won 7 times in 421): the
    bytes load hashes are the bytes the runtime gets, so the swap is caught, never run."""
    import edgekit
    from edgekit.core import bundle as manifest_mod
    from edgekit.device import classifier
    from edgekit.errors import ManifestError

    b = _copy(tiny_bundle, tmp_path)
    m = manifest_mod.read(b)
    real_read = manifest_mod.read

    def read_then_swap(path, verify=True):
        out = real_read(path, verify)
        (b / m["artifacts"]["int8"]).write_bytes((b / m["artifacts"]["fp32"]).read_bytes())  # another model
        return out

    monkeypatch.setattr(classifier.manifest, "read", read_then_swap)
    with pytest.raises(ManifestError, match="does not match its sha256"):
        edgekit.load(b)
    monkeypatch.setattr(classifier.manifest, "read", real_read)
    # an intact bundle loads from the verified bytes and classifies as before
    good = edgekit.load(tiny_bundle)
    assert good.classify(tiny_bundle / "example.png", top=1)[0].index >= 0


def test_bench_measures_and_compares_the_bytes_it_verified(tiny_bundle, tmp_path, monkeypatch):
    """Right after bench's one read of the artifacts and the golden set, the files are overwritten with junk: the
    latency runs, the golden drift and the --images drift all use the bytes that were verified, so the report is
    the intact bundle's (reopening any file would fail on the junk)."""
    from edgekit.core import bundle as manifest_mod
    from edgekit.device import harness

    b = _copy(tiny_bundle, tmp_path)
    images = tmp_path / "imgs" / "cat"
    images.mkdir(parents=True)
    (images / "a.png").write_bytes((b / "example.png").read_bytes())
    clean = harness.run(b, [1], runs=2, warmup=0, images=images.parent)
    real = manifest_mod.read_verified

    def read_then_spoil(bundle, m, names):
        out = real(bundle, m, names)
        assert "golden.npz" in names and m["artifacts"]["int8"] in names
        for name in names:
            (bundle / name).write_bytes(b"junk")
        return out

    monkeypatch.setattr(harness.manifest, "read_verified", read_then_spoil)
    spoiled = harness.run(b, [1], runs=2, warmup=0, images=images.parent)
    assert (b / "golden.npz").read_bytes() == b"junk"
    assert spoiled["golden"] == clean["golden"] and spoiled["golden"]["images"] > 0
    assert spoiled["images"]["top1_agreement"] == clean["images"]["top1_agreement"]
    for key in ("agreement", "agreement_ci95", "agreement_on"):
        assert spoiled["verdict"][key] == clean["verdict"][key]


def test_the_model_card_checks_the_wheel_before_installing_it(tiny_bundle, tmp_path):
    import hashlib
    import re
    import shutil

    b = tmp_path / "copy"
    shutil.copytree(tiny_bundle, b)
    card = (b / "README.md").read_text()
    line = next(x for x in card.splitlines() if "sha256sum -c" in x)
    wheel = next(b.glob("edgekit-*.whl"))
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() in line and wheel.name in line
    assert card.index("sha256sum -c") < card.index("pip install")  # checked first
    cmd = line.split("  #")[0]
    assert subprocess.run(["bash", "-c", cmd], cwd=b, capture_output=True).returncode == 0
    wheel.write_bytes(wheel.read_bytes() + b"\0")  # a wheel swapped in the copy
    assert subprocess.run(["bash", "-c", cmd], cwd=b, capture_output=True).returncode != 0
    assert re.search(r"echo '[0-9a-f]{64}  edgekit-", line)


def test_ls_does_not_show_figures_of_a_manifest_altered_in_the_store(tiny_bundle, tmp_path):
    import json

    store = tmp_path / "store"
    run_cli("publish", str(tiny_bundle), "--to", str(store), check=True)
    rows = json.loads(run_cli("ls", str(store), "--json", check=True).stdout)
    assert rows[0]["verified"] == "true"
    mpath = store / tiny_bundle.name / "manifest.json"
    m = json.loads(mpath.read_text())
    m["validation"]["top1_agreement"] = 1.0  # a tampered manifest claims a perfect model
    mpath.write_text(json.dumps(m))
    out = run_cli("ls", str(store), check=True).stdout
    assert "UNVERIFIED" in out and "100.00%" not in out and "pull refuses it" in out
    assert json.loads(run_cli("ls", str(store), "--json", check=True).stdout)[0]["verified"] == "false"


@pytest.mark.parametrize("record", ["[1, 2]", '{"name": "x"}', '{"manifest_sha256": 5}', "{" * 50000])
def test_a_malformed_store_record_is_one_line(tiny_bundle, tmp_path, record):
    store = tmp_path / "store"
    run_cli("publish", str(tiny_bundle), "--to", str(store), check=True)
    (store / f"{tiny_bundle.name}.edgekit.json").write_text(record)
    r = run_cli("pull", str(store / tiny_bundle.name), "--to", str(tmp_path / "got"))
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: "), r.stderr
    assert "publish record" in r.stderr and "Traceback" not in r.stderr


def test_a_golden_set_that_is_not_one_is_one_line_in_bench(tiny_bundle, tmp_path):
    """An edited manifest vouching for a golden.npz that is something else (its checksum made to match)."""
    import hashlib
    import json

    b = _copy(tiny_bundle, tmp_path)
    (b / "golden.npz").write_bytes(b"not a zip archive at all")
    m = json.loads((b / "manifest.json").read_text())
    m["files"]["golden.npz"] = hashlib.sha256((b / "golden.npz").read_bytes()).hexdigest()
    (b / "manifest.json").write_text(json.dumps(m))
    r = run_cli("bench", str(b), "--runs", "2", "--threads", "1", env={"EDGEKIT_HISTORY": str(tmp_path / "h.jsonl")})
    assert r.returncode == 2 and "is not a golden set" in r.stderr.strip().splitlines()[-1], r.stderr


# --- a full disk names the destination that is full (item 5) ---------------------------------------------------------

def _on_a_full_disk(tmp_path, size_kb: int, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`edgekit ARGS` with tmp_path/full a tmpfs of `size_kb` in a mount namespace of its own (nothing outside sees
    it); what the command left in it, as paths relative to it. Needs root and unshare (CI runs as root)."""
    import os
    import shutil

    if os.geteuid() != 0 or not shutil.which("unshare") or subprocess.run(["unshare", "-m", "true"]).returncode:
        pytest.skip("a small tmpfs needs root and unshare -m (mount rights): run as root, as CI does")
    full = tmp_path / "full"
    full.mkdir(parents=True)
    script = (f'mount -t tmpfs -o size={size_kb}k tmpfs "{full}" || exit 99; "$@"; rc=$?; '
              f'(cd "{full}" && find . -mindepth 1 -type f) > "{tmp_path}/left.txt"; exit $rc')
    args = [a.replace("FULL", str(full)) for a in args]
    r = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", sys.executable, "-m", "edgekit.cli", *args],
                       capture_output=True, text=True, cwd=REPO)
    if r.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    return r, (tmp_path / "left.txt").read_text().split()


def test_a_full_disk_names_the_destination_not_the_source(tiny_bundle, tmp_path):
    store = tmp_path / "store"
    run_cli("publish", str(tiny_bundle), "--to", str(store), check=True)
    for args in (["pull", str(store / tiny_bundle.name), "--to", "FULL"],
                 ["publish", str(tiny_bundle), "--to", "FULL/store"]):
        half_kb = sum(f.stat().st_size for f in tiny_bundle.iterdir()) // 2048  # room for half the bundle
        r, left = _on_a_full_disk(tmp_path / args[0], half_kb, *args)
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode == 2 and last.startswith("error: no space left on the device of "), r.stderr
        assert str(tmp_path / args[0] / "full") in last and str(store) not in last, last
        assert str(tiny_bundle) not in last and left == [], (last, left)


def test_a_full_output_or_cache_directory_is_named_and_nothing_half_written_stays(default_build, cache_dir, tmp_path):
    # the stages are cached (default_build's): only the bundle is written, to a disk too small for it
    r, left = _on_a_full_disk(tmp_path / "out", 2048, "build", "--variant", "lite0", "--target", "x86",
                              "--num-calib", "20", "--out", "FULL/dist", "--cache-dir", str(cache_dir))
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and f"no space left on the device of {tmp_path / 'out' / 'full' / 'dist'}" in last, last
    assert left == []
    # a cache on a full disk: the first stage's writer fails (a file name or none): the cache folder comes first
    r, left = _on_a_full_disk(tmp_path / "cache", 1024, "build", "--variant", "lite0", "--target", "x86",
                              "--num-calib", "20", "--out", str(tmp_path / "dist"), "--cache-dir", "FULL")
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "no space left on" in last and "unexpected" not in last, r.stderr
    full = tmp_path / "cache" / "full"
    assert f"the device of {full}" in last or f"writing to: --cache-dir {full} (" in last, last
    assert left == [] and not (tmp_path / "dist" / "lite0-x86-int8").exists()
