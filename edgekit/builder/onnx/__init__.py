"""The onnx route: export, QDQ quantize, saturation-safe weight grids, graph simulation, mixed precision and the
OpenVINO/ONNX backends."""
from edgekit.builder.onnx.route import ROUTE

__all__ = ["ROUTE"]
