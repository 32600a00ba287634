"""edgekit: EfficientNet-Lite from PyTorch to validated INT8 artifacts for edge devices, measured where they run.

Layers, bottom up: core (facts both sides read), device (numpy, Pillow, a runtime), builder (torch, onnx, the
converters; two routes), analysis (the accuracy-budget search), pipeline (the build in order), publish (stores),
cli (the command line). docs/design.md tells the story."""
__version__ = "0.2.0"



def __getattr__(name: str):
    """`edgekit.load(BUNDLE)` (edgekit.device.classifier.load), imported on first use: the command line and the build
    side do not pay for numpy and Pillow when they do not need them."""
    if name == "load":
        from edgekit.device.classifier import load

        return load
    raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
