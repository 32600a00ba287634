"""What INT8-aware fine-tuning optimises against what the board runs: each route's student (the simulated int8
arithmetic its loss is computed on: float biases, straight-through rounding), moved as tuning moves it, against
the model it writes back, run by the target's own runtime (onnxruntime for onnx, OpenVINO's CPU kernels for x86,
LiteRT for arm64), on held-out images. x86 runs OpenVINO on the QDQ model itself (its IR is OpenVINO's conversion
of that model). The simulation is not exact (docs/quantization.md says where): these tests hold each of its errors
below the quantization error it is used to reduce, by margins measured on this machine. Tiny variant (tests/tiny.py):
the arithmetic is the same whatever the weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekit.core import bundle as manifest
from edgekit.device import metrics, runtimes
from edgekit.device.preprocess import to_input

HELD = 12  # the last golden images and their mirror images: the comparison set
# How far (dB of logit SQNR) each error must stay below the post-training quantization error tuning works against.
# Measured on a 2-core AMD EPYC Zen 4 (cpu family 25, model 17), tiny variant, the moves of _move; quantization
# error 17.3 dB (QDQ), 10.6 dB (.tflite):
ARITHMETIC_MARGIN_DB = 12  # simulator on the written model vs runtime: onnxruntime 136.5, OpenVINO 48.5, LiteRT 34.6 dB
STUDENT_MARGIN_DB = 4  # the moved student vs runtime (write-back rounds biases, grids, int16-pair channels): 24.3,
#                        24.3, 23.8 dB, i.e. 7.0 (QDQ) and 13.2 (.tflite) dB below the quantization error


def _held(bundle) -> np.ndarray:
    px = np.load(bundle / "golden.npz")["pixels"][-HELD:]
    return np.concatenate([px, px[:, :, ::-1]])


def _nchw(px: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(px)).permute(0, 3, 1, 2).float()


def _sqnr(ref: np.ndarray, other: np.ndarray) -> float:
    return metrics.drift(ref, other)["logit_sqnr_db"]


def _runtime(runtime: str, path, x: np.ndarray) -> np.ndarray:
    run = runtimes.open_runner(runtime, path, threads=1)
    return np.concatenate([run(x[i:i + 1]) for i in range(len(x))])


def _move(student: torch.nn.Module) -> None:
    """What tuning does to a student, on purpose and seeded: a tenth of the weights one grid step up or down, every
    bias by a fraction of its int32 step or more, each activation grid (onnx route) by a few percent."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for w in student.w:
            w += torch.randint(-1, 2, w.shape, generator=g) * (torch.rand(w.shape, generator=g) < 0.1)
        for b in student.b:
            b += torch.randn(b.shape, generator=g) * 1e-3
        for s in getattr(student, "s", []):
            s += 0.03 * torch.randn((), generator=g)


def _compare(name: str, sim: np.ndarray, arithmetic: np.ndarray, real: np.ndarray, fp32: np.ndarray,
             post: np.ndarray) -> None:
    """sim: the moved student; arithmetic: the route's simulator on the written model; real: the runtime on it;
    post: the runtime on the post-training model, whose error against fp32 is what tuning works against."""
    quant = _sqnr(fp32, post)
    student, exact = _sqnr(real, sim), _sqnr(real, arithmetic)
    print(f"{name}: student vs runtime {student:.1f} dB, simulator on the written model vs runtime {exact:.1f} dB, "
          f"post-training int8 vs fp32 {quant:.1f} dB; top-1 student = runtime on "
          f"{(real.argmax(1) == sim.argmax(1)).mean():.3f}")
    assert exact >= quant + ARITHMETIC_MARGIN_DB  # the integer arithmetic: equal up to requantization rounding
    assert student >= quant + STUDENT_MARGIN_DB  # plus what write-back rounds (float biases, grids, int16-pair limits)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_the_qdq_student_computes_what_the_runtime_runs(tiny_bundles, tmp_path, runtime):
    """onnx route (the onnx target runs the QDQ model in onnxruntime; x86 converts the same model for OpenVINO)."""
    import onnx

    from edgekit.builder.onnx import tune
    from edgekit.builder.onnx.simulate import Graph

    b = tiny_bundles["onnx"]
    m = manifest.read(b)
    qm = onnx.load(b / m["artifacts"]["int8"])
    held = _held(b)
    x = to_input(held, m["input"])
    post = _runtime(runtime, b / m["artifacts"]["int8"], x)
    fp32 = tune.Teacher(onnx.load(b / m["artifacts"]["fp32"]))(_nchw(held))
    student = tune.QDQStudent(qm, ranges=True)
    _move(student)
    with torch.no_grad():
        sim = student(_nchw(held)).numpy()
    assert student.write_back()["weights_changed"] > 0
    onnx.save(qm, tmp_path / "model.int8.onnx")
    with torch.no_grad():
        arithmetic = [env[n.output[0]] for n, env in Graph(qm).run(_nchw(held))][-1].numpy()
    _compare(runtime, sim, arithmetic, _runtime(runtime, tmp_path / "model.int8.onnx", x), fp32, post)


def test_the_tflite_student_computes_what_litert_runs(tiny_bundles, tmp_path):
    from edgekit.builder.litert import graph, simulate, tune

    b = tiny_bundles["arm64"]
    m = manifest.read(b)
    qg = graph.read(bytearray((b / m["artifacts"]["int8"]).read_bytes()))
    fg = graph.read((b / m["artifacts"]["fp32"]).read_bytes())
    held = _held(b)
    x = to_input(held, m["input"])
    post = _runtime("litert", b / m["artifacts"]["int8"], x)
    student = tune.TFLiteStudent(qg)
    _move(student)
    with torch.no_grad():
        sim = student(_nchw(held)).numpy()
    assert student.write_back()["weights_changed"] > 0
    (tmp_path / "model.int8.tflite").write_bytes(bytes(qg.buf))
    written = graph.read((tmp_path / "model.int8.tflite").read_bytes())
    arithmetic = simulate.run(fg, written, held)["int8"]
    _compare("litert", sim, arithmetic, _runtime("litert", tmp_path / "model.int8.tflite", x),
             tune.teacher_logits(fg, _nchw(held)), post)
