import os

import pytest
import torch

from edgekit.builder.classes import imagenet1k
from edgekit.models.network import with_pixel_input
from edgekit.models.weights import WeightsError, build_model, resolve_weights
from edgekit.core.contract import normalized_nchw, pixels_nchw, preprocessing
from edgekit.core.variants import VARIANTS
from edgekit.device.preprocess import open_rgb, pixels, to_input

from .conftest import CLASSES_TSV, run_cli


def _skimage(name):
    import skimage.data

    return os.path.join(os.path.dirname(skimage.data.__file__), name)


@pytest.fixture(scope="module")
def lite0():
    v = VARIANTS["lite0"]
    return build_model(v, resolve_weights(v, None, False))


def _top5(model, image):
    v = model.variant
    x = to_input(pixels(open_rgb(_skimage(image)), preprocessing(v)), normalized_nchw(v))
    with torch.no_grad():
        return model(torch.from_numpy(x))[0].topk(5).indices.tolist()


def test_pretrained_lite0_knows_a_cat_and_coffee(lite0):
    assert 281 <= _top5(lite0, "chelsea.png")[0] <= 285
    assert _top5(lite0, "coffee.png")[0] in (967, 968, 504)  # espresso, cup, coffee mug


def test_pixel_input_folding_is_exact(lite0):
    v = lite0.variant
    px = pixels(open_rgb(_skimage("astronaut.png")), preprocessing(v))
    with torch.no_grad():
        a = lite0(torch.from_numpy(to_input(px, normalized_nchw(v))))
        b = with_pixel_input(lite0)(torch.from_numpy(to_input(px, pixels_nchw(v))))
    assert float((a - b).abs().max()) < 1e-4


def test_timm_format_checkpoint_loads_to_the_same_model(lite0, tmp_path):
    timm_ckpt = tmp_path / "tf_efficientnet_lite0.pth"
    torch.save({k: v for k, v in lite0.state_dict().items()}, timm_ckpt)
    v = VARIANTS["lite0"]
    again = build_model(v, resolve_weights(v, timm_ckpt, False))
    for (k, a), (_, b) in zip(lite0.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k


def test_checkpoint_of_another_variant_is_refused_naming_the_key(tmp_path):
    v0, v1 = VARIANTS["lite0"], VARIANTS["lite1"]
    ref = resolve_weights(v0, None, False)
    with pytest.raises(WeightsError, match=r"does not fit lite1: key 'blocks\.\d\.\d\.\w+\.\w+'"):
        build_model(v1, ref)
    r = run_cli("build", "--variant", "lite1", "--weights", str(ref.path), "--out", str(tmp_path / "d"),
                "--cache-dir", str(tmp_path / "c"))
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith("error: checkpoint does not fit lite1: key ")
    assert not (tmp_path / "d" / "lite1-x86-int8").exists()


def test_no_weights_needs_random_weights_flag():
    v = VARIANTS["lite3"]
    with pytest.raises(WeightsError, match="--random-weights"):
        resolve_weights(v, None, False)
    assert not resolve_weights(v, None, True).pretrained


def test_class_index_matches_shared_tsv():
    if not CLASSES_TSV.is_file():
        pytest.skip("../shared is absent")
    rows = [line.rstrip("\n").split("\t") for line in CLASSES_TSV.read_text().splitlines()[1:]]
    ci = imagenet1k()
    assert [(r[1], r[2]) for r in rows] == list(zip(ci.wnids, ci.names))
