"""edgekit: EfficientNet-Lite from PyTorch to validated INT8 artifacts for edge devices, measured where they run.

Layers, bottom up: core (facts both sides read), device (numpy, Pillow, a runtime), builder (torch, onnx, the
converters; two routes), analysis (the accuracy-budget search), pipeline (the build in order), publish (stores),
cli (the command line). docs/design.md tells the story."""
__version__ = "0.1.0"
