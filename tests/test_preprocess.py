import numpy as np
import pytest
from PIL import Image

from edgekit.core.contract import normalized_nchw, pixels_nchw, preprocessing
from edgekit.core.variants import VARIANTS
from edgekit.device.imagesets import directory_samples, load_pixels
from edgekit.device.preprocess import ImageError, open_rgb, resize_crop, to_input


def test_resize_crop_shape_and_center():
    img = Image.new("RGB", (400, 300), (10, 20, 30))
    px = resize_crop(img, 256, 224, "bicubic")
    assert px.shape == (224, 224, 3) and px.dtype == np.uint8
    assert (px == [10, 20, 30]).all()


def test_contracts():
    v = VARIANTS["lite1"]
    px = np.full((240, 240, 3), 255, np.uint8)
    raw = to_input(px, pixels_nchw(v))
    assert raw.shape == (1, 3, 240, 240) and raw.dtype == np.float32 and raw.max() == 255.0
    norm = to_input(px, normalized_nchw(v))
    assert np.allclose(norm, 1.0)
    q = {"layout": "NHWC", "dtype": "int8", "mean": [0, 0, 0], "std": [1, 1, 1],
         "quantization": {"scale": 1.0, "zero_point": -128}}
    assert to_input(px, q).max() == 127 and to_input(px, q).shape == (1, 240, 240, 3)
    assert preprocessing(v)["resize"] == 272


def test_corrupt_and_truncated_images_are_refused(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64)).save(good)
    Image.new("RGB", (512, 512)).save(tmp_path / "t.jpg")
    (tmp_path / "t.jpg").write_bytes((tmp_path / "t.jpg").read_bytes()[:200])
    with pytest.raises(ImageError, match="junk.jpg"):
        open_rgb(tmp_path / "junk.jpg")
    with pytest.warns(UserWarning, match="unreadable"):
        loaded = load_pixels(directory_samples(tmp_path), preprocessing(VARIANTS["lite0"]))
    assert loaded.ids == ["good.png"] and sorted(loaded.skipped) == ["junk.jpg", "t.jpg"]


def test_labels_from_wnid_folder_and_csv(tmp_path):
    from edgekit.builder.classes import imagenet1k

    ci = imagenet1k()
    for rel in ("n01440764_tench.JPEG", "cls/n01443537/a.png", "byindex/7/b.png"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(p, format="PNG")
    labels = {s.id: s.label for s in directory_samples(tmp_path, ci)}
    assert labels == {"n01440764_tench.JPEG": 0, "cls/n01443537/a.png": 1, "byindex/7/b.png": 7}
    (tmp_path / "labels.csv").write_text("file,label\nbyindex/7/b.png,n01443537\n")
    labels = {s.id: s.label for s in directory_samples(tmp_path, ci)}
    assert labels["byindex/7/b.png"] == 1 and labels["n01440764_tench.JPEG"] is None
