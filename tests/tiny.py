"""A tiny synthetic bundle for the fast tier: EfficientNet-Lite's blocks at a quarter of lite0's width and depth, a
48-pixel input, three classes and seeded random weights, built by the real pipeline (export, calibration,
quantization, conversion, validation, golden set, the bundle writer) in this process in seconds. Tests that need
*some* bundle (the device side, stores, signing, hostile inputs) use it; tests of what a real variant does use the
real builds of conftest.py."""
from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path

import pytest

from edgekit.core import variants

VARIANT = dataclasses.replace(variants.VARIANTS["lite0"], name="tiny", width=0.25, depth=0.25, input_size=48,
                              card_params=0, card_flops=0, weights=variants.WeightSource("tiny-00000000.pth"))
CLASSES = ("cat", "dog", "fox")
NAME = "pets"  # the checkpoint's model name: bundles are pets-tiny-<target>-int8


@contextlib.contextmanager
def registered():
    """VARIANTS with the tiny variant in it, for as long as the block runs (a build resolves it by name)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(variants.VARIANTS, VARIANT.name, VARIANT)
        yield


def checkpoint(path: Path) -> Path:
    """A checkpoint in `edgekit train`'s format with seeded random weights whose logits differ per image."""
    import torch

    from edgekit.models.network import create_model
    from edgekit.models.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION

    torch.manual_seed(0)
    model = create_model(dataclasses.replace(VARIANT, num_classes=len(CLASSES)))
    # EfficientNet's own initialisation, and BatchNorm statistics gathered on random images: activations keep their
    # scale through the blocks (torch's defaults shrink them to nothing, and every image gets the same logits)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # a plain average over the batches below
    torch.nn.init.normal_(model.classifier.weight, std=0.05)
    model.train()
    with torch.no_grad():
        for _ in range(8):
            model(torch.rand(16, 3, VARIANT.input_size, VARIANT.input_size) * 2 - 1)
    model.eval()
    meta = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "name": NAME, "variant": VARIANT.name,
            "class_names": list(CLASSES), "training": None, "build": {"int8_aware": False}}
    buf = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "edgekit": meta}, buf)
    path.write_bytes(buf.getvalue())
    return path


def build(target: str, out: Path, cache: Path) -> Path:
    """The tiny bundle for `target` in `out` (calibrated on 16 and validated on 32 of the embedded images)."""
    import warnings

    from edgekit.api import build as build_bundle

    ckpt = out.parent / "tiny.pt"
    if not ckpt.exists():
        checkpoint(ckpt)
    with registered(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few validation images, random weights: said in the manifest
        return build_bundle(None, target, weights=ckpt, num_calib=16, num_val=32, out=out, cache_dir=cache).path


def cli(*args: str):
    """`edgekit ARGS` in this process, with the tiny variant registered (`--variant tiny`): for tests of what the
    command line does with a build, not of a real variant. .returncode, .stdout, .stderr as a subprocess's."""
    from types import SimpleNamespace

    from click.testing import CliRunner

    from edgekit.cli import main

    import warnings

    # the command line prints warnings its own way (warnings.showwarning): the caller's come back afterwards
    with registered(), warnings.catch_warnings():
        r = CliRunner().invoke(main, list(args))
    return SimpleNamespace(returncode=r.exit_code, stdout=r.stdout, stderr=r.stderr)
