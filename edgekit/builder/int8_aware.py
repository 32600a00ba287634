"""INT8-aware fine-tuning, a build step: the loop, the same for every route (builder/tune.py runs it in a build).

A route hands in a *student*: a torch module that evaluates its own int8 artifact's arithmetic (the grids, per-channel
weight scales, activation ranges, rounding and saturation of builder/onnx/simulate.py or builder/litert/simulate.py)
with the integer weights and the biases as trainable values. Rounding passes gradients straight through
(`fakequant.ste_round`),
so the forward pass is the artifact's arithmetic exactly and the backward pass sees where each weight would like to
move. The teacher is the FP32 model the user gave: its logits on the calibration images, computed once. No labels are
needed; with `label_weight` above 0, images that carry labels add a cross-entropy term (off by default: it pulls the
model away from FP32, docs/quantization.md).

Held out: a share of the calibration images never enters a gradient step. Their logit SQNR and top-1 agreement
against FP32 are measured before the first step (the post-training model) and after every epoch; the epoch with the
best SQNR among those that agree on as many held-out images as the post-training model is kept, and if none beats
the post-training model the result says so and the caller keeps it.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from edgekit.builder.request import TuneOptions
from edgekit.device import metrics
from edgekit.progress import Progress, no_progress, with_info
from edgekit.training import augment
from edgekit.training.loop import schedule


class Student(Protocol):
    """A route's int8 artifact as a torch module (see the module docstring)."""

    w: torch.nn.ParameterList  # integer weights, in grid steps ("w.<i>")
    b: torch.nn.ParameterList  # bias changes, in output units ("b.<i>")
    # optionally s: activation grids, log factors on their scales ("s.<i>")

    def named_parameters(self): ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...  # raw pixels, NCHW float -> logits

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> object: ...


@dataclass
class Held:
    """The student on the held-out images, against FP32."""
    epoch: int
    logit_sqnr_db: float
    top1_agreement: float
    loss: float = 0.0
    seconds: float = 0.0


@dataclass
class Tuned:
    """What the loop did: figures before (post-training) and at every epoch, the epoch kept (0: none beat the
    post-training model, which is then kept)."""
    before: Held
    epochs: list[Held] = field(default_factory=list)
    best_epoch: int = 0
    train_images: int = 0
    held_images: int = 0
    labelled: int = 0
    seconds: float = 0.0

    @property
    def kept(self) -> bool:
        return self.best_epoch > 0

    @property
    def best(self) -> Held:
        return self.epochs[self.best_epoch - 1] if self.kept else self.before

    def record(self, options: TuneOptions) -> dict:
        """For the manifest and the stage's meta (times rounded: the bytes of the model do not depend on them)."""
        def brief(h: Held) -> dict:
            return {"epoch": h.epoch, "logit_sqnr_db": round(h.logit_sqnr_db, 3),
                    "top1_agreement": round(h.top1_agreement, 6)}
        return {"options": options.to_dict(), "train_images": self.train_images, "held_out_images": self.held_images,
                "labelled_images": self.labelled, "kept": self.kept, "best_epoch": self.best_epoch,
                "held_out_before": brief(self.before), "held_out_after": brief(self.best),
                "epochs": [brief(h) for h in self.epochs], "seconds": round(self.seconds, 1)}


def split(n: int, held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices of n calibration images: a seeded shuffle, at least one image on each side."""
    order = np.random.default_rng(seed).permutation(n)
    k = min(n - 1, max(1, int(round(n * held_out))))
    return np.sort(order[k:]), np.sort(order[:k])


def _held(student, x: torch.Tensor, teacher: np.ndarray, batch: int, epoch: int) -> Held:
    with torch.no_grad():
        out = np.concatenate([student(x[i:i + batch].float()).float().numpy() for i in range(0, len(x), batch)])
    d = metrics.drift(teacher, out)
    return Held(epoch, d["logit_sqnr_db"], d["top1_agreement"])


def tune(student: Student, x: torch.Tensor, teacher: Callable[[torch.Tensor], np.ndarray],
         labels: np.ndarray | None, options: TuneOptions, progress: Progress = no_progress,
         say: Callable[[str], None] = lambda s: None) -> Tuned:
    """Fine-tune `student` (in place) on raw pixels x (N, 3, H, W; uint8, made float a batch at a time: memory
    follows the batch) towards the FP32 `teacher(x) -> logits`.
    Each batch is a fresh augmented view (training/augment.py: crops, flips, colour) with the teacher's logits on
    that view, or (options.augment off) the images and their mirror images. Returns what was done; the student holds
    the best epoch's values (or its starting values when none was better)."""
    t_start = time.perf_counter()
    torch.manual_seed(options.seed)
    tr, ho = split(len(x), options.held_out, options.seed)
    xt, xh = x[tr], x[ho]
    advance = progress("int8-aware: FP32 teacher logits", len(ho) + (0 if options.augment else 2 * len(tr)))
    th = teacher(xh)
    advance(len(ho))
    if not options.augment:
        fixed = (torch.from_numpy(teacher(xt)), torch.from_numpy(teacher(xt.flip(3))))
        advance(2 * len(tr))
    aug = augment.augmenter(x.shape[-1]) if options.augment else None
    y = None
    labelled = 0
    if labels is not None and options.label_weight > 0:
        lab = np.asarray(labels[tr], np.int64)
        labelled = int((lab >= 0).sum())
        if labelled:
            y = torch.from_numpy(lab)

    before = _held(student, xh, th, options.batch_size, 0)
    result = Tuned(before, train_images=len(tr), held_images=len(ho), labelled=labelled)
    say(f"int8-aware: post-training model on {len(ho)} held-out calibration images: logit SQNR "
        f"{before.logit_sqnr_db:.2f} dB, agreement {100 * before.top1_agreement:.2f} %")
    start = copy.deepcopy(student.state_dict())
    best_state, best_sqnr = None, before.logit_sqnr_db
    groups = {"w.": options.lr, "b.": options.bias_lr, "s.": options.range_lr}
    opt = torch.optim.Adam([{"params": [p for n, p in student.named_parameters() if p.requires_grad
                                        and n.startswith(prefix)], "lr": lr} for prefix, lr in groups.items()])
    steps = math.ceil(len(tr) / options.batch_size)
    sched = schedule(opt, steps, options.epochs)
    g = torch.Generator().manual_seed(options.seed)
    for epoch in range(1, options.epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(len(tr), generator=g)
        flips = torch.rand(len(tr), generator=g) < 0.5
        advance = with_info(progress(f"int8-aware epoch {epoch}/{options.epochs}", steps, "batch"))
        total = 0.0
        for i in range(0, len(tr), options.batch_size):
            idx = order[i:i + options.batch_size]
            if aug is not None:
                with torch.no_grad():
                    xb = aug(xt[idx].float() / 255.0).mul_(255.0).round_().clamp_(0, 255)  # pixels, as the artifact takes
                tb = torch.from_numpy(teacher(xb))
            else:
                f = flips[idx]
                xb = torch.where(f[:, None, None, None], xt[idx].flip(3), xt[idx]).float()
                tb = torch.where(f[:, None], fixed[1][idx], fixed[0][idx])
            out = student(xb)
            # error power over logit power (1/SQNR): the same loss whatever the scale of a model's logits
            loss = (out - tb).pow(2).mean() / tb.pow(2).mean().clamp(min=1e-12)
            if y is not None:
                yb = y[idx]
                known = yb >= 0
                if known.any():
                    loss = loss + options.label_weight * F.cross_entropy(out[known], yb[known])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            advance(1, f"loss {total / min(len(tr), i + len(idx)):.4f}")
        h = _held(student, xh, th, options.batch_size, epoch)
        h.loss, h.seconds = total / len(tr), time.perf_counter() - t0
        result.epochs.append(h)
        # better: more SQNR on the held-out images, and no held-out image lost to a flip on the way
        better = h.logit_sqnr_db > best_sqnr + 1e-9 and h.top1_agreement >= before.top1_agreement
        if better:
            best_sqnr, result.best_epoch = h.logit_sqnr_db, epoch
            best_state = copy.deepcopy(student.state_dict())
        say(f"int8-aware epoch {epoch}/{options.epochs}: loss {h.loss:.4f}; held-out logit SQNR "
            f"{h.logit_sqnr_db:.2f} dB, agreement {100 * h.top1_agreement:.2f} %; {h.seconds:.1f} s"
            + ("  (best)" if better else ""))
    student.load_state_dict(best_state if best_state is not None else start)
    result.seconds = time.perf_counter() - t_start
    return result
