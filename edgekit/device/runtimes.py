"""Device runtimes behind one call shape: `runner(x) -> logits` (device side: no torch, no onnx).

Each runtime is imported only when used, so a board needs just the one its bundle names.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from edgekit.errors import ModelLoadError, RuntimeMissing
from edgekit.progress import Progress, no_progress

Runner = Callable[[np.ndarray], np.ndarray]



def _onnxruntime(path: Path, threads: int | None, fp32_reference: bool, content: dict | None = None,
                 spin: bool = True) -> Runner:
    try:
        import onnxruntime as ort
    except ImportError:
        raise RuntimeMissing("onnxruntime is not installed: pip install onnxruntime (edgekit's device-onnx extra)") \
            from None
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    if not spin:  # its threads would busy-wait between runs on the cores the caller's other threads need
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(content[path.name] if content else str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def _openvino(path: Path, threads: int | None, fp32_reference: bool, content: dict | None = None,
              spin: bool = True) -> Runner:
    try:
        import openvino as ov
    except ImportError:
        raise RuntimeMissing("openvino is not installed: pip install openvino (edgekit's device-openvino extra)") \
            from None
    config: dict = {}
    if fp32_reference:
        # OpenVINO runs "FP32" models in bf16 on CPUs with AVX-512 BF16 unless told otherwise.
        config["INFERENCE_PRECISION_HINT"] = "f32"
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    core = ov.Core()
    if content:  # the bytes the caller verified: IR .xml with its .bin weights, or an .onnx
        model = core.read_model(content[path.name], content.get(path.with_suffix(".bin").name, b""))
        compiled = core.compile_model(model, "CPU", config)
    else:
        compiled = core.compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})[0].copy()


def tflite_interpreter_class():
    """ai-edge-litert's Interpreter, else tflite-runtime's (what older Raspberry Pi images have); (class, package)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        raise RuntimeMissing("no TFLite runtime is installed: pip install ai-edge-litert (edgekit's device-tflite "
                             "extra), or tflite-runtime") from None



def _litert(path: Path, threads: int | None, fp32_reference: bool, content: dict | None = None,
            spin: bool = True) -> Runner:
    Interpreter, package = tflite_interpreter_class()
    data = content[path.name] if content else Path(path).read_bytes()
    # The interpreters verify the flatbuffer, but a file cut short before its header can still take the process
    # down: refuse anything that is not a TFLite flatbuffer before handing it over.
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelLoadError(f"{path} is not a TFLite model (truncated or corrupt): rebuild or re-pull the bundle")
    try:
        # no thread count given: all cores, as onnxruntime and OpenVINO do by default (the interpreter would use one)
        it = Interpreter(model_content=data, num_threads=threads or os.cpu_count() or 1)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ModelLoadError(f"{package} cannot load {path}: {str(e).strip().splitlines()[0]}; the file is corrupt "
                             "or needs a newer runtime") from None
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zero_point = out["quantization"]

    def run(x: np.ndarray) -> np.ndarray:
        if x.dtype != inp["dtype"]:
            raise ModelLoadError(f"{path.name} takes {np.dtype(inp['dtype']).name} input, got {x.dtype.name}: the "
                                 "manifest's input contract and the artifact disagree")
        it.set_tensor(inp["index"], x)
        it.invoke()
        y = it.get_tensor(out["index"])
        return (y.astype(np.float32) - zero_point) * scale if scale else y.copy()

    return run


RUNTIMES: dict[str, Callable[..., Runner]] = {
    "onnxruntime": _onnxruntime,
    "openvino": _openvino,
    "litert": _litert,
}


def runtime_version(runtime: str) -> tuple[str, str | None]:
    """(package, version) of what runs `runtime` here; version None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    package = {"openvino": "openvino", "onnxruntime": "onnxruntime"}.get(runtime, runtime)
    if runtime == "litert":
        try:
            package = tflite_interpreter_class()[1]
        except RuntimeMissing:
            return "ai-edge-litert", None
    try:
        return package, version(package)
    except PackageNotFoundError:
        return package, None


FORMATS = {"onnxruntime": (".onnx",), "openvino": (".xml", ".onnx"), "litert": (".tflite",)}  # what each one reads


def open_runner(runtime: str, path: Path, threads: int | None = None, fp32_reference: bool = False,
                content: dict[str, bytes] | None = None, spin: bool = True) -> Runner:
    """`content`: the artifact's files already read (and verified) by the caller, by file name; the runtime loads
    those bytes, not the files again. `spin`: the runtime's threads may busy-wait for the next run (onnxruntime's
    default: the least latency back to back, as bench measures it); off where the caller works between runs."""
    if runtime not in RUNTIMES:
        raise RuntimeMissing(f"unknown runtime '{runtime}': known are {', '.join(RUNTIMES)}")
    path = Path(path)
    check_format(runtime, path)
    return RUNTIMES[runtime](path, threads, fp32_reference, content, spin)


def artifact_files(path: Path) -> list[str]:
    """The files one artifact is made of (an OpenVINO IR is its .xml and .bin)."""
    path = Path(path)
    return [path.name] + ([path.with_suffix(".bin").name] if path.suffix == ".xml" else [])


def check_format(runtime: str, path: Path) -> None:
    """Refuse a model file `runtime` cannot read, naming the runtimes that can."""
    if runtime not in FORMATS:
        raise RuntimeMissing(f"unknown runtime '{runtime}': known are {', '.join(FORMATS)}")
    path = Path(path)
    if path.suffix not in FORMATS[runtime]:
        able = [r for r, suffixes in FORMATS.items() if path.suffix in suffixes]
        raise ModelLoadError(f"{runtime} cannot run {path.name} ({path.suffix} models run with "
                             f"{' or '.join(able) or 'no edgekit runtime'}): use the bundle's own runtime (--runtime auto, or "
                             "runtime='auto' in edgekit.load)")


def artifact_logits(runtime: str, root: Path, artifacts: dict, pixels: np.ndarray, contracts: dict,
                    progress: Progress = no_progress, precisions: tuple[str, ...] = ("int8", "fp32"),
                    content: dict[str, bytes] | None = None) -> dict[str, np.ndarray]:
    """The artifacts' logits on the same HWC pixels, each fed its own input contract, one image at a time, with the
    runtime at its default threading. contracts/artifacts: {"int8": ..., "fp32": ...}; `content`: the artifacts'
    bytes, verified by the caller, loaded instead of the files (as in open_runner)."""
    from edgekit.device.preprocess import to_input

    out = {}
    for precision in precisions:
        x = to_input(pixels, contracts[precision])
        run = open_runner(runtime, root / artifacts[precision], fp32_reference=precision == "fp32", content=content)
        advance = progress(f"{precision} on {runtime}", len(x))
        logits = []
        for i in range(len(x)):
            logits.append(run(x[i:i + 1]))
            advance(1)
        out[precision] = np.concatenate(logits)
    return out


def openvino_conv_precisions(path: Path) -> dict[str, int]:
    """How many convolutions OpenVINO's compiled CPU graph runs at each precision (e.g. {'u8': 49})."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU")
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == "Convolution":
            p = info["runtimePrecision"].astype(str)
            counts[p] = counts.get(p, 0) + 1
    return counts
