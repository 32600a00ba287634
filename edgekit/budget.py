"""Accuracy budget of a build (`--max-drop`, `--min-agreement`): what the INT8 artifact must keep of FP32 on the
validation images, and whether a measured drift keeps it."""
from __future__ import annotations

import math
from dataclasses import dataclass

# the search gives up after this many layers raised (in float, or int16 tensors): past it, int8 has lost its point
MAX_RAISED_LAYERS = 8
MAX_SLOWDOWN = 1.10  # mixed-precision latency over plain int8 past which the build warns (issue 6's limit)


class BudgetError(RuntimeError):
    pass


@dataclass(frozen=True)
class Budget:
    max_drop: float | None = None  # points of top-1 (FP32 minus INT8, against labels)
    min_agreement: float | None = None  # fraction of images where INT8 and FP32 agree on top-1

    def __post_init__(self):
        if self.max_drop is None and self.min_agreement is None:
            raise BudgetError("an accuracy budget needs --max-drop or --min-agreement")
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
                out.append(f"top-1 drop {drop:.2f} points > {self.max_drop:g}")
        if self.min_agreement is not None:
            agree = drift.get("top1_agreement")
            if agree is None or agree < self.min_agreement - 1e-9:
                out.append(f"agreement {100 * (agree or 0):.2f} % < {100 * self.min_agreement:g} %")
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
