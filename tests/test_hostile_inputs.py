"""Hostile inputs (the hostile-inputs issue, items 1, 4 and part of 5): an image of an
absurd shape cannot make preprocessing allocate gigabytes, an image over the pixel limit is refused before it is
decoded, 16-bit PNGs are scaled (not clipped) and EXIF orientation is applied, identically everywhere."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from edgekit.device import preprocess
from edgekit.device.imagesets import directory_samples, load_pixels
from edgekit.errors import ImageError
from tests.conftest import REPO

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
