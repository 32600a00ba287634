"""The target table: one declarative TOML file per target in the repository's `targets/` folder (name, route,
backend, runtime, input contract, default calibration method; core/datafiles.py finds it in a checkout and in an
installed wheel alike). A new target is a new file."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import tomllib

from edgekit.core.datafiles import data_files
from edgekit.errors import UnknownTarget


@dataclass(frozen=True)
class Target:
    name: str
    aliases: tuple[str, ...]
    description: str
    format: str
    backend: str
    runtime: str
    device_extra: str  # the extra of edgekit's wheel that brings this target's runtime to a board
    build_extra: str  # the extra a build machine needs for this target (pyproject.toml: build-x86, build-arm64)
    input_contract: str  # of the INT8 artifact (core/contract.py CONTRACTS)
    route: str = "onnx"  # the package edgekit.builder.<route> that makes its artifacts: "onnx" or "litert"
    fp32_input_contract: str | None = None  # when the FP32 reference takes another input than the INT8 artifact
    calibration_method: str = "minmax"  # what `edgekit build` uses for this target unless --method says otherwise
    notes: str = ""
    device_note: str = ""  # said beside the device install (e.g. an older runtime that also works)


@lru_cache(maxsize=1)
def targets() -> dict[str, Target]:
    out: dict[str, Target] = {}
    for f in data_files("targets"):
        d = tomllib.loads(f.read_text())
        d["aliases"] = tuple(d.get("aliases", ()))
        out[d["name"]] = Target(**d)
    return out


def get_target(name: str) -> Target:
    key = name.lower()
    for t in targets().values():
        if key == t.name or key in t.aliases:
            return t
    valid = ", ".join(f"{t.name} ({'/'.join(t.aliases)})" if t.aliases else t.name for t in targets().values())
    raise UnknownTarget(f"unknown target '{name}': choose one of {valid}")


def resolve_targets(name: str) -> list[Target]:
    """'all' means every target; otherwise one name (or alias) or a comma-separated list, in the order given."""
    if name.strip().lower() == "all":
        return list(targets().values())
    names = [n.strip() for n in name.split(",") if n.strip()]
    if not names:
        raise UnknownTarget(f"--target {name!r}: name one of {', '.join(targets())}, a comma-separated list or 'all'")
    return list({t.name: t for t in map(get_target, names)}.values())
