"""`edgekit predict`: classify images, video files, streams and cameras with a bundle, timing each step.

Images: decode, prepare (resize, crop, input contract), inference. Frames: capture (read and decode by the source),
prepare, inference. Decode or capture and preparation run in a thread of their own, a few inputs ahead of inference
(`Ahead`): the runtimes, Pillow and OpenCV release the GIL, so on two or more cores the steps overlap. Inputs are
classified in their order, each once; the summary counts what inference has reached. A source that stops raises
StreamError carrying the summary of what was processed so far.
"""
from __future__ import annotations

import csv
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generic, Iterable, Iterator, TypeVar

import numpy as np

from edgekit.core import intervals
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
        right = sum(h[1] for h in self.hits.values())
        return {"labelled": n, "top1": right / n, "top1_ci95": list(intervals.wilson(right, n)),
                "per_class": [{"class": name(k), "images": h[0], "top1": h[1] / h[0],
                               "top1_ci95": list(intervals.wilson(h[1], h[0]))} for k, h in sorted(self.hits.items())]}


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


T = TypeVar("T")
AHEAD = 2  # inputs prepared ahead of inference: enough to hide a slow frame, little memory (two input tensors)


class Ahead(Generic[T]):
    """The items of `produce`, made in a thread of their own at most `depth` ahead of the reader, handed out in
    order; an exception of `produce` is raised where its item would have been. `close()` stops the thread and waits
    for it (call it before closing what `produce` reads: a camera is not released under a read)."""

    def __init__(self, produce: Iterator[T], depth: int = AHEAD):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(produce,), name="edgekit-prepare", daemon=True)
        self._thread.start()

    def _fill(self, produce: Iterator[T]) -> None:
        try:
            for item in produce:
                if not self._put((True, item)):
                    return
            self._put((False, None))
        except BaseException as e:  # handed to the reader, in its place
            self._put((False, e))
        finally:
            close = getattr(produce, "close", None)
            if close:
                close()

    def _put(self, entry) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            try:
                more, item = self._queue.get(timeout=0.1)  # a timed wait: Ctrl-C reaches it on every platform
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    return  # stopped without its end marker (close() from elsewhere)
                continue
            if more:
                yield item
            elif item is None:
                return
            else:
                raise item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class _Prepared:
    read: int  # inputs read so far (frames skipped by --every included)
    tensor: np.ndarray | None  # None: nothing to classify (a skipped frame, an unreadable image)
    timing_ms: dict[str, float]
    path: Path | None = None
    failed: str | None = None


def images(model: Classifier, paths: list[Path], top: int, summary: Summary,
           labels: dict[Path, int] | None = None) -> Iterator[Result]:
    """One Result per readable image; unreadable ones are counted in `summary.failed` and skipped; images with a
    label count towards the summary's top-1."""
    def prepared() -> Iterator[_Prepared]:
        for n, path in enumerate(paths, 1):
            t0 = time.perf_counter()
            try:
                img = model.decode(path)
            except EdgekitError as e:  # its message names the file and Pillow's reason
                yield _Prepared(n, None, {}, path, str(e).removeprefix("cannot read image "))
                continue
            t1 = time.perf_counter()
            x = model.prepare(img)
            yield _Prepared(n, x, {"decode": _ms(t0, t1), "prepare": _ms(t1, time.perf_counter())}, path)

    start = time.perf_counter()
    ahead = Ahead(prepared())
    try:
        for item in ahead:
            summary.read = item.read
            if item.failed is not None:
                summary.failed.append(item.failed)
                continue
            t2 = time.perf_counter()
            logits = model.run(item.tensor)
            timing = {**item.timing_ms, "inference": _ms(t2, time.perf_counter())}
            summary.add(timing)
            summary.seconds = time.perf_counter() - start
            if labels:
                summary.score(labels.get(item.path), int(np.argmax(logits[0])))
            yield Result(str(item.path), model.predictions(logits[0], top), timing)
    finally:
        ahead.close()


def frames(model: Classifier, source: FrameSource, top: int, every: int, summary: Summary,
           max_frames: int | None = None, clock: Callable[[], float] = time.perf_counter) -> Iterator[Result]:
    """Every `every`-th frame of `source` classified, until it ends (or `max_frames` are read). A live source
    that stops raises StreamError after `summary` is complete."""
    def prepared() -> Iterator[_Prepared]:
        read = 0
        while max_frames is None or read < max_frames:
            t0 = clock()
            frame = source.read()
            if frame is None:
                return
            t1 = clock()
            read += 1
            if (read - 1) % every:
                yield _Prepared(read, None, {})
                continue
            x = model.prepare(frame)
            yield _Prepared(read, x, {"capture": _ms(t0, t1), "prepare": _ms(t1, clock())})

    start = clock()
    ahead = Ahead(prepared())
    try:
        try:
            for item in ahead:
                summary.read = item.read
                if item.tensor is None:
                    continue
                t2 = clock()
                logits = model.run(item.tensor)
                timing = {**item.timing_ms, "inference": _ms(t2, clock())}
                summary.add(timing)
                summary.seconds = clock() - start
                yield Result(source.name, model.predictions(logits[0], top), timing, frame=summary.read - 1)
        except StreamError as e:
            summary.stopped = str(e)
            raise
    finally:
        try:
            ahead.close()  # before the source is closed: never under a read
        finally:
            summary.seconds = clock() - start
            source.close()
