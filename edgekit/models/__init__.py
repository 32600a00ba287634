"""The model both the build and training use: EfficientNet-Lite in PyTorch (network.py), its weights (weights.py:
which, from where, key names, what fits) and edgekit's checkpoint file (checkpoint.py). Torch, never onnx; above
core, below training and the builder."""
