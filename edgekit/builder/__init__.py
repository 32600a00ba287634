"""The build side, the only place torch, onnx and the converters are imported: the request, the stage runner and
its cache, model and weights, calibration sets, validation and golden set, the bundle; the two routes (onnx/,
litert/) behind one interface (route.py)."""
