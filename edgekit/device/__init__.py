"""The device side: numpy, Pillow and the bundle's runtime, never torch or onnx. Preprocessing, image sets, metrics,
runtimes, the bench harness and its history, remote boards over ssh, the per-variant matrix, the machine probe."""
