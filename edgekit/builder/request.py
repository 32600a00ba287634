"""What a build is asked to do: the typed input of every stage (variant, target, weights, images, options,
accuracy budget). Plain data; nothing here runs."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.core import intervals
from edgekit.core.bundle import bundle_name
from edgekit.core.classes import ClassIndex
from edgekit.errors import BudgetError

if TYPE_CHECKING:  # types only: the CLI reads METHODS from here without loading images or weights code
    from edgekit.builder.calibration import Selection
    from edgekit.core.targets import Target
    from edgekit.core.variants import Variant
    from edgekit.models.weights import WeightsRef

METHODS = ("minmax", "percentile", "entropy")  # activation-range calibration; a route may take fewer
ROUNDINGS = ("gptq", "nearest")  # weight rounding (rounding.py)
BIAS_IMAGES = 64  # bias-correction images: lite0 logit SQNR 22.8 dB with 32, 23.2 with 64, 23.2 with 128


@dataclass(frozen=True)
class QuantOptions:
    method: str = "minmax"  # edgekit build takes the target's calibration_method unless --method says otherwise
    percentile: float = 99.999
    bias_correction: bool = True
    int16_safe_weights: bool = True  # weight grids whose int16 pair sums cannot overflow (onnx/saturation.py)
    weight_rounding: str = "gptq"  # or "nearest"; see rounding.py

    def to_dict(self) -> dict:
        return {"method": self.method, "percentile": self.percentile,
                "bias_correction": self.bias_correction, "int16_safe_weights": self.int16_safe_weights,
                "weight_rounding": self.weight_rounding}


@dataclass(frozen=True)
class TuneOptions:
    """INT8-aware fine-tuning (builder/int8_aware.py): plain values, part of the stage's cache key and the manifest."""

    epochs: int = 8
    batch_size: int = 16
    lr: float = 3e-3  # weights are held in units of their own grid step: Adam moves each by about lr steps a step
    bias_lr: float = 3e-4  # biases, in the layer's output units
    range_lr: float = 1e-3  # activation grids, as a log factor on the calibrated scale (onnx route; 0: fixed)
    augment: bool = False  # crop/flip/colour views with the teacher run on each (else the images and their mirrors)
    held_out: float = 0.2  # of the calibration images, never trained on: judges the epochs
    label_weight: float = 0.0  # cross-entropy against labels where the images carry them (0: distillation alone)
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Budget:
    """Accuracy the INT8 artifact must keep of FP32 on the validation images (`--max-drop`, `--min-agreement`);
    analysis/budget.py searches for a model that keeps it."""
    max_drop: float | None = None  # points of top-1 (FP32 minus INT8, against labels)
    min_agreement: float | None = None  # fraction of images where INT8 and FP32 agree on top-1

    def __post_init__(self):
        if self.max_drop is None and self.min_agreement is None:
            raise BudgetError("an accuracy budget needs --max-drop or --min-agreement")
        if self.max_drop is not None and not 0 <= self.max_drop <= 100:  # INT8 is not asked to beat FP32
            raise BudgetError(f"--max-drop {self.max_drop:g} is not a number of top-1 points in [0, 100]")
        if self.min_agreement is not None and not 0 < self.min_agreement <= 1:
            raise BudgetError(f"--min-agreement {100 * self.min_agreement:g} is not a percentage in (0, 100]")

    def problems(self, drift: dict) -> list[str]:
        """What the drift breaks, in words; empty when it holds. A drop needs labelled images."""
        out = []
        if self.max_drop is not None:
            drop = drift.get("top1_drop_points")
            if drop is None:
                out.append("no labelled validation images to measure the top-1 drop on")
            elif drop > self.max_drop + 1e-9:
                out.append(f"top-1 drop {intervals.points(drop, drift.get('top1_drop_points_ci95'))} > "
                           f"{self.max_drop:g}")
        if self.min_agreement is not None:
            agree = drift.get("top1_agreement")
            if agree is None or agree < self.min_agreement - 1e-9:
                out.append(f"agreement {intervals.percent(agree or 0, drift.get('top1_agreement_ci95'))} < "
                           f"{100 * self.min_agreement:g} %")
        return out

    def unresolved(self, drift: dict) -> list[str]:
        """Warnings for a budget finer than the validation images can measure: its figure's 95 % interval is wider
        than the budget, with about how many photos would resolve it. The decision stays on the point figure."""
        out = []
        lo_hi = drift.get("top1_drop_points_ci95")
        if self.max_drop is not None and lo_hi and (lo_hi[1] - lo_hi[0]) / 2 > self.max_drop:
            n = drift.get("labelled_images") or drift["images"]
            need = intervals.images_to_resolve(self.max_drop, drift.get("disagreements", 0) / max(1, drift["images"]))
            out.append(f"--max-drop {self.max_drop:g} is finer than {n} labelled validation photos can measure (the "
                       f"drop's 95 % interval is {lo_hi[0]:.1f} to {lo_hi[1]:.1f} points); about {need} photos would "
                       "resolve it: pass --val DIR with more, or allow more; the decision is made on the point figure")
        lo_hi = drift.get("top1_agreement_ci95")
        if self.min_agreement is not None and lo_hi and (lo_hi[1] - lo_hi[0]) / 2 > 1 - self.min_agreement:
            a = self.min_agreement
            n = intervals.images_for_agreement(a)
            need = "no number of photos" if n is None else f"about {n} photos"
            out.append(f"--min-agreement {100 * a:g} is finer than {drift['images']} validation photos can measure "
                       f"(the agreement's 95 % interval is {100 * lo_hi[0]:.1f} to {100 * lo_hi[1]:.1f} %); {need} "
                       "would resolve it: pass --val DIR with more, or allow more; the decision is made on the point "
                       "figure")
        return out

    def allowed_disagreements(self, images: int) -> int | None:
        """Most INT8/FP32 top-1 disagreements --min-agreement allows on `images` validation images."""
        if self.min_agreement is None:
            return None
        return int(math.floor(images * (1 - self.min_agreement) + 1e-9))

    def to_dict(self) -> dict:
        return {"max_drop_points": self.max_drop, "min_agreement": self.min_agreement}

    def describe(self) -> str:
        parts = ([f"--max-drop {self.max_drop:g}"] if self.max_drop is not None else []) + \
                ([f"--min-agreement {100 * self.min_agreement:g}"] if self.min_agreement is not None else [])
        return " ".join(parts)


@dataclass(frozen=True)
class BuildRequest:
    variant: Variant
    target: Target
    weights: WeightsRef
    selection: Selection
    quant: QuantOptions
    out_dir: Path
    allow_float: bool = False  # arm64: ship ops the integer path cannot handle as float (listed in the manifest)
    budget: Budget | None = None  # accuracy the INT8 artifact must keep; layers are raised until it holds
    classes: ClassIndex | None = None  # what the outputs mean; None: ImageNet-1k
    name: str | None = None  # a custom model's name, the bundle's prefix (`flowers-lite0-x86-int8`)
    replace: bool = False  # may replace a bundle of other weights or classes under the same name (--force)
    tune: TuneOptions | None = None  # INT8-aware fine-tuning after calibration (--int8-aware); a budget may add it

    def __post_init__(self):
        if self.classes is None:
            from edgekit.builder.classes import imagenet1k

            object.__setattr__(self, "classes", imagenet1k())
        if self.variant.num_classes != len(self.classes):  # the head is as wide as the class list, always
            object.__setattr__(self, "variant", dataclasses.replace(self.variant, num_classes=len(self.classes)))

    @property
    def bundle_name(self) -> str:
        return bundle_name(self.variant.name, self.target.name, self.name)
