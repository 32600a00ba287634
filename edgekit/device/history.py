"""The bench history: one JSON line per `edgekit bench` run, appended, so runs compare across devices and days."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path



def history_path() -> Path:
    env = os.environ.get("EDGEKIT_HISTORY")
    return Path(env) if env else Path.home() / ".local" / "share" / "edgekit" / "history.jsonl"


def append_history(report: dict, path: Path | None = None) -> Path:
    path = path or history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(report, default=str) + "\n")
    return path


def read_history(path: Path | None = None) -> list[dict]:
    path = path or history_path()
    if not path.is_file():
        return []
    out, bad = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # e.g. a run killed while writing: the others still count
                bad.append(n)
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} line(s) that are not valid JSON (line {bad[0]}"
                      f"{', ...' if len(bad) > 1 else ''}); fix or remove them")
    return out
