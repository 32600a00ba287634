"""What a build records about how it was made: tool versions (also part of every stage key) and the git commit."""
from __future__ import annotations

import functools
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

TOOLS = ("torch", "onnx", "onnxscript", "onnxruntime", "openvino", "litert-torch", "ai-edge-quantizer",
         "ai-edge-litert", "numpy", "pillow")


@functools.lru_cache(maxsize=1)  # asked by every stage key; installed versions do not change within a build
def tool_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in TOOLS:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                           timeout=5)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
