"""What a model's outputs mean: the class index (names, and WordNet ids for ImageNet-1k), and how a folder name or a
label in a file is matched to it. Plain data both sides read: the build writes it into the manifest, the device
reads it back (no build imports)."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property

from edgekit.errors import DataError

_SEP = re.compile(r"[\s_\-]+")


def normalize(name: str) -> str:
    """Folder names and class names compare case-blind, with spaces, '_' and '-' alike: `Lily_Valley` is
    `lily-valley`."""
    return _SEP.sub(" ", name.strip().lower()).strip()


@dataclass(frozen=True)
class ClassIndex:
    names: tuple[str, ...]
    wnids: tuple[str, ...] = ()  # ImageNet-1k only: the WordNet id of each class

    def __post_init__(self):
        if self.wnids and len(self.wnids) != len(self.names):
            raise ValueError("one WordNet id per class")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def imagenet(self) -> bool:
        return bool(self.wnids)

    @cached_property
    def digest(self) -> str:
        """What the outputs mean, as a cache key part: the names and ids in order."""
        return hashlib.sha256("\n".join(self.names + ("",) + self.wnids).encode()).hexdigest()

    @cached_property
    def _table(self) -> dict[str, int]:
        if self.wnids:  # ImageNet: WordNet ids only; its names would label folders like monitor/ or desk/ by chance
            return {w.lower(): i for i, w in enumerate(self.wnids)}
        return {normalize(n): i for i, n in enumerate(self.names)}  # check_names keeps them apart

    def label_of(self, text: str) -> int | None:
        """The class a folder name or a label names: a class name (a model of your own classes), a WordNet id
        (ImageNet), or a class index."""
        text = text.strip()
        hit = self._table.get(text.lower() if self.wnids else normalize(text))
        if hit is None and text.isdigit() and int(text) < len(self.names):
            hit = int(text)
        return hit

    def to_manifest(self) -> dict:
        return {"class_names": list(self.names), "class_wnids": list(self.wnids)}

    @classmethod
    def from_manifest(cls, m: dict) -> "ClassIndex":
        return cls(tuple(m["class_names"]), tuple(m.get("class_wnids") or ()))


def by_index(count: int) -> ClassIndex:
    """No names known: folders named 0..count-1."""
    return ClassIndex(tuple(str(i) for i in range(count)))


def check_names(names: list[str], where: str) -> tuple[str, ...]:
    """Class names as a user gives them (a labels file, a checkpoint): no empty names, no duplicates."""
    for i, n in enumerate(names, 1):
        if not n.strip():
            raise DataError(f"{where}: line {i} is empty; give one class name per line, in the order of the model's "
                            "outputs")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{where}: class name(s) {', '.join(repr(d) for d in dup[:3])} appear more than once; each "
                        "class needs a name of its own")
    norm = [normalize(n) for n in names]
    clash = sorted({n for n, k in zip(names, norm) if norm.count(k) > 1})
    if clash:
        raise DataError(f"{where}: class names {', '.join(repr(c) for c in clash[:3])} differ only in case or "
                        "separators, so folders cannot tell them apart; rename one")
    if len(names) < 2:
        raise DataError(f"{where}: a classifier needs at least two classes, got {len(names)}")
    return tuple(n.strip() for n in names)


def read_labels_file(path) -> tuple[str, ...]:
    """A labels file: one class name per line, in the order of the model's outputs."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise DataError(f"labels file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the first name
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read labels file {p}: {e}") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # a trailing newline or two is not an empty class
        lines.pop()
    return check_names(lines, f"labels file {p}")
