"""The training loops, plain PyTorch: the classifier head on features computed once (a frozen trunk), and fine-tuning
the later stages (or the whole network) on augmented batches, both with early stopping on validation accuracy and
the best epoch kept.

BatchNorm: every BatchNorm layer keeps the pretrained running statistics (eval mode) and only its scale and shift
learn where the stage trains. Batches of 32 from a few hundred photos would give noisy statistics, and the bundle
folds BatchNorm into the convolutions with exactly these running values."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from edgekit.progress import Progress, no_progress, with_info
from edgekit.training import augment

HEAD_LR = 3e-3
FINETUNE_LR = 1e-4
WARMUP_EPOCHS = 1
EMA_DECAY = 0.98  # fine-tuning is judged and kept as an exponential moving average of its weights (~50 steps)


@dataclass
class Epoch:
    phase: str  # "head" or "finetune"
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float = 0.0

    def line(self, total: int, best: bool) -> str:
        return (f"{self.phase} epoch {self.epoch}/{total}: train loss {self.train_loss:.3f}, accuracy "
                f"{100 * self.train_accuracy:.1f} %; val loss {self.val_loss:.3f}, accuracy "
                f"{100 * self.val_accuracy:.2f} %; lr {self.lr:.1e}; {self.seconds:.1f} s" + ("  (best)" if best else ""))

    def record(self) -> dict:
        """Without the time: a checkpoint's bytes must not depend on how fast the machine was."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items() if k != "seconds"}


@dataclass
class Best:
    """Early stopping on validation accuracy (ties: the lower validation loss); the best weights kept."""

    patience: int
    accuracy: float = -1.0
    loss: float = math.inf
    epoch: int = 0
    state: dict | None = None
    waited: int = 0
    history: list[Epoch] = field(default_factory=list)

    def update(self, e: Epoch, module: torch.nn.Module) -> bool:
        self.history.append(e)
        if e.val_accuracy > self.accuracy + 1e-12 or (abs(e.val_accuracy - self.accuracy) <= 1e-12
                                                      and e.val_loss < self.loss):
            self.accuracy, self.loss, self.epoch, self.waited = e.val_accuracy, e.val_loss, e.epoch, 0
            self.state = copy.deepcopy({k: v.detach().cpu() for k, v in module.state_dict().items()})
            return True
        self.waited += 1
        return False

    def stopped(self, phase: str, epoch: int, say: Callable[[str], None]) -> bool:
        """True (and said) once `patience` epochs have brought nothing better."""
        if self.waited < self.patience:
            return False
        say(f"{phase}: no better validation accuracy for {self.patience} epochs: stopped at epoch {epoch}, best "
            f"{self.epoch}")
        return True


@dataclass
class Setup:
    """What both loops share: where tensors go, the batch size, the variant's normalisation, the seed, and how to
    report."""

    device: torch.device
    batch_size: int
    mean: tuple
    std: tuple
    seed: int
    label_smoothing: float
    progress: Progress = no_progress
    say: Callable[[str], None] = lambda line: None

    def batches(self, n: int, shuffle: bool, epoch: int = 0):
        if shuffle:
            g = torch.Generator().manual_seed(self.seed * 1000 + epoch)
            order = torch.randperm(n, generator=g).numpy()
        else:
            order = np.arange(n)
        for i in range(0, n, self.batch_size):
            yield np.sort(order[i:i + self.batch_size])  # sorted rows read a memmap in order

    def inputs(self, px: np.ndarray) -> torch.Tensor:
        x = augment.normalize(augment.to_tensor(px, self.device), self.mean, self.std)
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cpu" else x


@torch.inference_mode()
def features(model, px: np.ndarray, s: Setup, label: str) -> torch.Tensor:
    """Pooled features of every image (the trunk frozen: computed once)."""
    out = []
    advance = s.progress(label, len(px))
    for idx in s.batches(len(px), shuffle=False):
        out.append(model.features(s.inputs(px[idx])).float())
        advance(len(idx))
    return torch.cat(out) if out else torch.zeros(0, model.classifier.in_features, device=s.device)


@torch.inference_mode()
def evaluate(model, px: np.ndarray, s: Setup, label: str | None = None) -> torch.Tensor:
    out = []
    advance = s.progress(label, len(px)) if label else (lambda n: None)
    for idx in s.batches(len(px), shuffle=False):
        out.append(model(s.inputs(px[idx])).float())
        advance(len(idx))
    return torch.cat(out)


def _metrics(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def schedule(opt, steps_per_epoch: int, epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first epoch, then cosine to zero."""
    warm = max(1, WARMUP_EPOCHS * steps_per_epoch)
    total = max(warm + 1, epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def fit_head(head: torch.nn.Linear, f_train: torch.Tensor, y_train: torch.Tensor, f_val: torch.Tensor,
             y_val: torch.Tensor, s: Setup, epochs: int, patience: int, dropout: float) -> Best:
    """Logistic regression on frozen features: label smoothing, dropout on the features, AdamW with warm-up and
    cosine; the epoch with the best validation accuracy is kept (its weights loaded back)."""
    opt = torch.optim.AdamW(head.parameters(), lr=HEAD_LR, weight_decay=1e-4)
    steps = math.ceil(len(f_train) / s.batch_size)
    sched = schedule(opt, steps, epochs)
    best = Best(patience)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        head.train()
        total, hits, seen = 0.0, 0, 0
        for idx in s.batches(len(f_train), shuffle=True, epoch=epoch):
            idx = torch.from_numpy(idx).to(s.device)
            logits = head(F.dropout(f_train[idx], dropout, training=True))
            loss = F.cross_entropy(logits, y_train[idx], label_smoothing=s.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            hits += int((logits.argmax(1) == y_train[idx]).sum())
            seen += len(idx)
        head.eval()
        with torch.inference_mode():
            vl, va = _metrics(head(f_val), y_val)
        e = Epoch("head", epoch, total / seen, hits / seen, vl, va, sched.get_last_lr()[0],
                  time.perf_counter() - t0)
        improved = best.update(e, head)
        if epoch == 1 or improved or epoch % 10 == 0 or epoch == epochs:  # a hundred fast epochs: lines that say something
            s.say(e.line(epochs, improved))
        if best.stopped("head", epoch, s.say):
            break
    head.load_state_dict(best.state)
    return best


def _trainable(model, stages: int | None) -> int:
    """Freeze all but the last `stages` stages of blocks (None: train everything); returns how many stages are
    frozen (run without gradients)."""
    n = len(model.blocks)
    frozen = 0 if stages is None else max(0, n - stages)
    for p in model.parameters():
        p.requires_grad = stages is None
    for block in list(model.blocks)[frozen:]:
        for p in block.parameters():
            p.requires_grad = True
    for m in (model.conv_head, model.bn2, model.classifier):
        for p in m.parameters():
            p.requires_grad = True
    return frozen


def _forward(model, x: torch.Tensor, frozen: int, full: bool, dropout: float) -> torch.Tensor:
    """The model's forward with the frozen front run without gradients (memory and time), dropout before the head."""
    f = model.features(x, None if full else frozen)
    return model.classifier(F.dropout(f, dropout, training=True))


def finetune(model, train_px, y_train: np.ndarray, val_px, y_val: np.ndarray, s: Setup, epochs: int, patience: int,
             stages: int | None, dropout: float, crop: int) -> Best:
    """Fine-tune the last `stages` stages (None: all) and the head on augmented crops of the training canvases; the
    moving average of the weights is validated each epoch, and the best one is loaded into `model`."""
    frozen = _trainable(model, stages)
    full = stages is None
    model.eval()  # BatchNorm keeps its running statistics (see the module's docstring)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-2}, {"params": rest, "weight_decay": 0.0}],
                            lr=FINETUNE_LR)
    steps = math.ceil(len(train_px) / s.batch_size)
    sched = schedule(opt, steps, epochs)
    aug = augment.augmenter(crop).to(s.device)
    yt, yv = torch.from_numpy(y_train).to(s.device), torch.from_numpy(y_val).to(s.device)
    # the average of the last steps' weights generalises better than the last step's on a few hundred photos, and
    # it is what is validated and kept (BatchNorm statistics are frozen, so averaging weights is all it takes)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad = False
    pairs = [(e, p) for e, p in zip(ema.parameters(), model.parameters()) if p.requires_grad]
    best = Best(patience)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        total, hits, seen = 0.0, 0, 0
        advance = with_info(s.progress(f"fine-tune epoch {epoch}/{epochs}", steps, "batch"))
        for idx in s.batches(len(train_px), shuffle=True, epoch=epoch):
            x01 = aug(augment.to_tensor(train_px[idx], s.device))
            x = augment.normalize(x01, s.mean, s.std)
            if s.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            y = yt[torch.from_numpy(idx).to(s.device)]
            logits = _forward(model, x, frozen, full, dropout)
            loss = F.cross_entropy(logits, y, label_smoothing=s.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                for e_p, p in pairs:
                    e_p.lerp_(p, 1 - EMA_DECAY)
            total += loss.item() * len(idx)
            hits += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            advance(1, f"loss {total / seen:.3f}, accuracy {100 * hits / seen:.1f} %")
        vl, va = _metrics(evaluate(ema, val_px, s), yv)
        e = Epoch("finetune", epoch, total / seen, hits / seen, vl, va, sched.get_last_lr()[0],
                  time.perf_counter() - t0)
        improved = best.update(e, ema)
        s.say(e.line(epochs, improved))
        if best.stopped("fine-tune", epoch, s.say):
            break
    model.load_state_dict(best.state)
    for p in model.parameters():
        p.requires_grad = False
    return best
