"""edgekit's checkpoint file: what `edgekit train` writes (tensors and a plain-data record of the model: variant,
classes, name, training, what its builds should do) and what a build reads back, safely (weights only: no pickled
code runs). One place for the format, the writer and the reader."""
from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import WeightsError

CHECKPOINT_FORMAT = "edgekit-checkpoint"  # what `edgekit train` writes: {"state_dict": tensors, "edgekit": plain data}
CHECKPOINT_VERSION = 1


def unwrap(obj) -> dict:
    if isinstance(obj, dict):
        for k in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
            if k in obj and isinstance(obj[k], dict):
                return obj[k]
        return obj
    raise WeightsError("checkpoint is not a state dict")


def read(path: Path):
    """torch.load with weights_only (no pickled code runs); one line for what cannot be read."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a corrupt or non-tensor file
        text = str(e)
        # torch's "Weights only load failed" text advises dropping weights_only, which is exactly what must not
        # be done: keep only the unpickler's own reason
        cause = next((ln.split("error:", 1)[1].strip() for ln in text.splitlines() if "Unpickler error:" in ln),
                     text.strip().splitlines()[0] if text.strip() else "") or type(e).__name__
        if "Unsupported global" in cause:
            raise WeightsError(f"cannot read checkpoint {path}: it holds pickled Python objects, not only tensors "
                               f"({cause.split(' was not an allowed global')[0]}); edgekit never runs pickled code: "
                               "save the weights alone with torch.save(model.state_dict(), FILE)") from None
        raise WeightsError(f"cannot read checkpoint {path}: not a PyTorch checkpoint ({cause})") from None


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about itself before any model is built: edgekit's own record (from `edgekit train`)
    or nothing, and the width of its classifier head."""

    meta: dict | None
    head_width: int | None

    @property
    def variant(self) -> str | None:
        return (self.meta or {}).get("variant")

    @property
    def class_names(self) -> list[str] | None:
        return (self.meta or {}).get("class_names")

    @property
    def int8_aware(self) -> bool:
        """`edgekit train --int8-aware`: builds of this checkpoint fine-tune for int8 unless told otherwise."""
        return bool(((self.meta or {}).get("build") or {}).get("int8_aware"))

    @property
    def name(self) -> str | None:
        return (self.meta or {}).get("name")


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read once per file version in a process (a build asks several times: options, classes, the bundle)."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file not found: {p}")
    st = p.stat()
    return _inspect(str(p), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _inspect(path: str, mtime_ns: int, size: int) -> CheckpointInfo:
    p = Path(path)
    raw = read(p)
    meta = raw.get("edgekit") if isinstance(raw, dict) else None
    if meta is not None:
        if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
            raise WeightsError(f"checkpoint {p}: its 'edgekit' entry is not an edgekit training record")
        if meta.get("format_version") != CHECKPOINT_VERSION:
            raise WeightsError(f"checkpoint {p}: record version {meta.get('format_version')} is not supported "
                               f"(this edgekit reads {CHECKPOINT_VERSION}); retrain with this edgekit")
        names = meta.get("class_names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) \
                or not isinstance(meta.get("variant"), str) or not isinstance(meta.get("name", ""), str):
            raise WeightsError(f"checkpoint {p}: its edgekit record is damaged (class names, variant or name); "
                               "train it again")
    state = unwrap(raw)
    head = next((v for k, v in state.items() if k.removeprefix("module.") in ("classifier.weight", "_fc.weight")
                 and hasattr(v, "shape") and len(v.shape) == 2), None)
    return CheckpointInfo(meta, int(head.shape[0]) if head is not None else None)


def encode(state: dict, record: dict) -> bytes:
    """The checkpoint's bytes: `state` (tensors) and `record` (plain data) under this format's name and version.
    In memory first: torch.save names its zip records after the file, and the bytes must repeat."""
    import torch

    buf = io.BytesIO()
    torch.save({"state_dict": state, "edgekit": {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
                                                 **record}}, buf)
    return buf.getvalue()
