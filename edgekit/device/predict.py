"""`edgekit predict`: classify images, video files, streams and cameras with a bundle, timing each step.

Images: decode, prepare (resize, crop, input contract), inference. Frames: capture (read and decode by the source),
prepare, inference. A source that stops raises StreamError carrying the summary of what was processed so far.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from edgekit.device.classifier import Classifier, Prediction
from edgekit.device.frames import FrameSource
from edgekit.core.classes import ClassIndex
from edgekit.device.imagesets import IMAGE_SUFFIXES, label_resolver, list_images
from edgekit.errors import EdgekitError, StreamError

@dataclass
class Result:
    input: str
    predictions: list[Prediction]
    timing_ms: dict[str, float]
    frame: int | None = None

    def to_dict(self) -> dict:
        d = {"input": self.input, **({"frame": self.frame} if self.frame is not None else {}),
             "predictions": [p.to_dict() for p in self.predictions], "timing_ms": self.timing_ms}
        return d


@dataclass
class Summary:
    kind: str  # "image" or "frame"
    source: str
    read: int = 0  # images or frames read
    classified: int = 0
    failed: list[str] = field(default_factory=list)  # unreadable images
    seconds: float = 0.0
    times: dict[str, list[float]] = field(default_factory=dict)
    stopped: str | None = None  # why a live source ended early
    hits: dict[int, list[int]] = field(default_factory=dict)  # label -> [labelled images, top-1 right]
    class_names: list[str] = field(default_factory=list)

    def add(self, timing_ms: dict[str, float]) -> None:
        self.classified += 1
        for k, v in timing_ms.items():
            self.times.setdefault(k, []).append(v)

    def to_dict(self) -> dict:
        lat = {k: {"p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90))}
               for k, v in self.times.items() if v}
        return {"kind": self.kind, "source": self.source, "read": self.read, "classified": self.classified,
                "failed": len(self.failed), "first_failed": self.failed[:3], "seconds": self.seconds,
                "per_second": self.classified / self.seconds if self.seconds > 0 else None,
                "latency_ms": lat, "stopped": self.stopped, **self._accuracy()}

    def score(self, label: int | None, predicted: int) -> None:
        if label is not None:
            h = self.hits.setdefault(label, [0, 0])
            h[0] += 1
            h[1] += int(predicted == label)

    def _accuracy(self) -> dict:
        """Top-1 against the labels the folders gave (none: nothing)."""
        n = sum(h[0] for h in self.hits.values())
        if not n:
            return {}
        name = (lambda i: self.class_names[i] if i < len(self.class_names) else str(i))
        return {"labelled": n, "top1": sum(h[1] for h in self.hits.values()) / n,
                "per_class": [{"class": name(k), "images": h[0], "top1": h[1] / h[0]}
                              for k, h in sorted(self.hits.items())]}


def image_paths(inputs: Iterable[Path], classes: ClassIndex | None = None) -> tuple[list[Path], dict[Path, int]]:
    """Image files in the given order (directories expand to their images, sorted), and the labels of those a
    directory labels for `classes` (class folders, WordNet ids in names, a labels.csv: as bench --images reads them)."""
    out: list[Path] = []
    labels: dict[Path, int] = {}
    resolvers: dict[Path, object] = {}
    for p in inputs:
        found = list_images(p) if p.is_dir() else [p]
        out += found
        if classes is None:
            continue
        root = p if p.is_dir() else p.parent  # a single file: only a WordNet id in its name labels it
        if root not in resolvers:
            try:
                resolvers[root] = label_resolver(root, classes)[0]
            except (OSError, UnicodeDecodeError, csv.Error):  # an unreadable labels.csv: no labels, no crash
                resolvers[root] = lambda f: None
        labels.update({f: lab for f in found if (lab := resolvers[root](f)) is not None})
    return out, labels


def is_image(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES


def _ms(t0: float, t1: float) -> float:
    return (t1 - t0) * 1e3


def images(model: Classifier, paths: list[Path], top: int, summary: Summary,
           labels: dict[Path, int] | None = None) -> Iterator[Result]:
    """One Result per readable image; unreadable ones are counted in `summary.failed` and skipped; images with a
    label count towards the summary's top-1."""
    start = time.perf_counter()
    for path in paths:
        summary.read += 1
        t0 = time.perf_counter()
        try:
            img = model.decode(path)
        except EdgekitError as e:  # its message names the file and Pillow's reason
            summary.failed.append(str(e).removeprefix("cannot read image "))
            continue
        t1 = time.perf_counter()
        x = model.prepare(img)
        t2 = time.perf_counter()
        logits = model.run(x)
        t3 = time.perf_counter()
        timing = {"decode": _ms(t0, t1), "prepare": _ms(t1, t2), "inference": _ms(t2, t3)}
        summary.add(timing)
        summary.seconds = time.perf_counter() - start
        if labels:
            summary.score(labels.get(path), int(np.argmax(logits[0])))
        yield Result(str(path), model.predictions(logits[0], top), timing)


def frames(model: Classifier, source: FrameSource, top: int, every: int, summary: Summary,
           max_frames: int | None = None, clock: Callable[[], float] = time.perf_counter) -> Iterator[Result]:
    """Every `every`-th frame of `source` classified, until it ends (or `max_frames` are read). A live source
    that stops raises StreamError after `summary` is complete."""
    start = clock()
    try:
        while max_frames is None or summary.read < max_frames:
            t0 = clock()
            try:
                frame = source.read()
            except StreamError as e:
                summary.stopped = str(e)
                raise
            if frame is None:
                break
            t1 = clock()
            summary.read += 1
            if (summary.read - 1) % every:
                continue
            x = model.prepare(frame)
            t2 = clock()
            logits = model.run(x)
            t3 = clock()
            timing = {"capture": _ms(t0, t1), "prepare": _ms(t1, t2), "inference": _ms(t2, t3)}
            summary.add(timing)
            summary.seconds = clock() - start
            yield Result(source.name, model.predictions(logits[0], top), timing, frame=summary.read - 1)
    finally:
        summary.seconds = clock() - start
        source.close()
