"""The litert route: convert (litert-torch), fully-integer quantize (ai-edge-quantizer with edgekit's ranges), the
TFLite graph reader and writer, integer simulation, per-tensor sensitivity."""
from edgekit.builder.litert.route import ROUTE

__all__ = ["ROUTE"]
