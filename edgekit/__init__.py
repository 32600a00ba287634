"""edgekit: EfficientNet-Lite from PyTorch to validated INT8 artifacts for edge devices, measured where they run.

Layers, bottom up: core (facts both sides read), device (numpy, Pillow, a runtime), builder (torch, onnx, the
converters; two routes), analysis (the accuracy-budget search), pipeline (the build in order), publish (stores),
cli (the command line). docs/design.md tells the story."""
__version__ = "0.2.0"



def __getattr__(name: str):
    """`edgekit.load(BUNDLE)` (device.classifier), `edgekit.train(DATA, ...)` (training.trainer) and
    `edgekit.build(VARIANT, TARGET, ...)` (api), imported on first use: a board that only runs bundles never
    imports torch, and the command line pays only for what it runs."""
    if name == "load":
        from edgekit.device.classifier import load

        return load
    if name == "train":
        from edgekit.training.trainer import train

        return train
    if name == "build":
        from edgekit.api import build

        return build
    raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
