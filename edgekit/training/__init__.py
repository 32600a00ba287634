"""The training layer (edgekit/training/), beside the build: a lite variant fine-tuned on a folder of photos of your own classes
(`edgekit train`, `edgekit.train()`), written as a checkpoint `edgekit build --weights` reads, class names and all.

data.py (class folders, split, pixel stores) ─► loop.py (head on frozen features, fine-tuning) ─► trainer.py (the
run in order, checkpoint and report) ─► report.py (the PNG). augment.py: the kornia augmentation. It shares the
model and weights code of the build side; the device side never imports it."""
from __future__ import annotations

from edgekit.training.trainer import MODES, TrainOptions, TrainResult, train

__all__ = ["MODES", "TrainOptions", "TrainResult", "train"]
