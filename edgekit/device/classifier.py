"""`edgekit.load(BUNDLE)`: a bundle as a classifier object for applications on the board.

The same preprocessing (`device/preprocess.py`) and runners (`device/runtimes.py`) as validation and `edgekit
bench`: what an application gets is what was measured. numpy, Pillow and the bundle's runtime only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Union

import numpy as np
from PIL import Image

from edgekit.core import bundle as manifest
from edgekit.core import contract
from edgekit.device import preprocess, runtimes
from edgekit.errors import ImageError, UsageError

ImageInput = Union[str, Path, Image.Image, np.ndarray]
PRECISIONS = ("int8", "fp32")


@dataclass(frozen=True)
class Prediction:
    rank: int  # 1 = the most likely class
    index: int  # the output's index: the line of labels.txt
    wnid: str | None  # ImageNet's WordNet id, e.g. n01440764; None for a model of your own classes
    name: str
    probability: float  # softmax of the logits

    def to_dict(self) -> dict:
        return asdict(self)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Classifier:
    """One artifact of a verified bundle, opened with its runtime. `run` (and what calls it) is for one thread at a
    time; `decode`, `pixels` and `prepare` read only the manifest and may run beside it (predict does)."""

    def __init__(self, bundle: str | Path, precision: str = "int8", threads: int | None = None,
                 runtime: str = "auto"):
        if precision not in PRECISIONS:
            raise UsageError(f"precision {precision!r}: choose int8 or fp32")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise UsageError(f"threads={threads!r}: give a thread count of 1 or more, or None for all cores")
        self.path = Path(bundle)
        self.manifest = manifest.read(self.path)  # verifies every file's sha256
        self.precision = precision
        self.runtime = self.manifest["target"]["runtime"] if runtime == "auto" else runtime
        self.contract = contract.from_manifest(self.manifest, precision)  # the input tensor the artifact takes
        self.preprocessing = self.manifest["preprocessing"]
        self.class_names: list[str] = self.manifest["class_names"]
        self.class_wnids: list[str] = self.manifest.get("class_wnids") or []
        self.artifact = self.path / self.manifest["artifacts"][precision]
        runtimes.check_format(self.runtime, self.artifact)
        # the runtime loads the bytes that were just hashed: a file swapped after the check is never run
        content = manifest.read_verified(self.path, self.manifest, runtimes.artifact_files(self.artifact))
        # an application works between calls (predict prepares the next frame in another thread meanwhile): no
        # runtime thread busy-waits on the core that work needs
        self._run = runtimes.open_runner(self.runtime, self.artifact, threads=threads,
                                         fp32_reference=precision == "fp32", content=content, spin=False)

    def __repr__(self) -> str:
        return f"Classifier({self.manifest['name']!r}, {self.precision}, {self.runtime})"

    # Three steps, each timed on its own by `edgekit predict`: decode, prepare (resize, crop, input contract), run.
    def decode(self, image: ImageInput) -> Image.Image:
        return to_pil(image)

    def pixels(self, image: ImageInput) -> np.ndarray:
        """The manifest's resize and center crop: HWC uint8 RGB."""
        return preprocess.pixels(to_pil(image), self.preprocessing)

    def prepare(self, image: ImageInput) -> np.ndarray:
        """The artifact's input tensor for one image (batch 1)."""
        return preprocess.to_input(self.pixels(image), self.contract)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits (float32, one row per image) for input tensors; one artifact call per image (batch 1)."""
        return np.concatenate([self._run(x[i:i + 1]) for i in range(len(x))])

    def infer(self, px: np.ndarray) -> np.ndarray:
        """Logits for HWC or NHWC pixels (as `pixels` gives them)."""
        return self.run(preprocess.to_input(px, self.contract))

    def predictions(self, logits: np.ndarray, top: int = 5) -> list[Prediction]:
        if not isinstance(top, int) or top < 1:
            raise UsageError(f"top={top!r}: give 1 or more classes")
        top = min(top, len(self.class_names))  # at most: a model of 3 classes answers top=5 with its 3
        probs = _softmax(logits.reshape(-1))
        order = np.argsort(-probs, kind="stable")[:top]
        return [Prediction(rank, int(i), self.class_wnids[i] if self.class_wnids else None, self.class_names[i],
                           float(probs[i])) for rank, i in enumerate(order, 1)]

    def classify(self, image: ImageInput, top: int = 5) -> list[Prediction]:
        """Top-`top` classes of one image: a path, a PIL image or an HxWx3 uint8 RGB array."""
        return self.predictions(self.infer(self.pixels(image))[0], top)

    def classify_batch(self, images: Iterable[ImageInput], top: int = 5) -> list[list[Prediction]]:
        images = list(images)
        if not images:
            return []
        px = np.stack([self.pixels(im) for im in images])
        return [self.predictions(row, top) for row in self.infer(px)]


def to_pil(image: ImageInput) -> Image.Image:
    if isinstance(image, Image.Image):
        return preprocess.to_rgb(image)  # oriented and 8-bit as open_rgb makes them; decode()'s RGB: no copy
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageError(f"an image array must be HxWx3 uint8 RGB, got shape {image.shape} {image.dtype}")
        return Image.fromarray(image, "RGB")
    if isinstance(image, (str, Path)):
        return preprocess.open_rgb(image)
    raise ImageError(f"cannot classify a {type(image).__name__}: give a path, a PIL image or an HxWx3 uint8 array")


def load(bundle: str | Path, precision: str = "int8", threads: int | None = None,
         runtime: str = "auto") -> Classifier:
    """Verify the bundle and open its `precision` artifact with the manifest's runtime (or `runtime`)."""
    return Classifier(bundle, precision, threads, runtime)
