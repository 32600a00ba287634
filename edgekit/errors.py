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


class ChildFailed(EdgekitError):
    """An edgekit command run as a child process failed; it printed its own error line, so this one is silent."""
    already_reported = True

    def __init__(self, code: int):
        super().__init__(f"edgekit child command exited {code}")
        self.exit_code = code
