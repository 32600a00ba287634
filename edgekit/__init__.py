"""edgekit: EfficientNet-Lite from PyTorch to validated INT8 artifacts for edge devices, measured where they run.

Layers, bottom up: core (facts both sides read), device (numpy, Pillow, a runtime), builder (torch, onnx, the
converters; two routes), analysis (the accuracy-budget search), pipeline (the build in order), publish (stores),
cli (the command line). docs/design.md tells the story."""
__version__ = "0.2.0"


def load(bundle, precision: str = "int8", threads: int | None = None, runtime: str = "auto"):
    """A bundle as a classifier: verified, opened with its runtime. `edgekit.load("lite0-arm64-int8").classify(
    "cat.jpg")` gives the top-5 classes. See edgekit.device.classifier.Classifier."""
    from edgekit.device.classifier import load as _load

    return _load(bundle, precision, threads, runtime)
