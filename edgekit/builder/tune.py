"""INT8-aware fine-tuning as a build step, the part every route shares: the calibration images as raw pixels, the
FP32 teacher's logits (plain and mirrored), the loop (builder/int8_aware.py) with the build's progress, and the
record the manifest keeps. Each route's `tune` makes its student and writes the tuned artifact
(builder/onnx/tune.py, builder/litert/tune.py)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from edgekit.builder.request import BuildRequest, TuneOptions
from edgekit.builder.stages import Run


def fit(run: Run, req: BuildRequest, student, teacher: Callable) -> dict:
    """Fine-tune `student` in place on the calibration images towards `teacher(x) -> FP32 logits`; returns the
    record (int8_aware.Tuned.record) with `kept` saying whether the student changed."""
    import torch

    from edgekit.builder import int8_aware

    opts = req.tune or TuneOptions()
    loaded = run.calib()
    x = torch.from_numpy(np.ascontiguousarray(loaded.pixels)).permute(0, 3, 1, 2)  # uint8: float per batch
    labels = loaded.labels if (loaded.labels >= 0).any() else None
    tuned = int8_aware.tune(student, x, teacher, labels, opts, run.progress, lambda line: run.progress(line, 0))
    return tuned.record(opts)
