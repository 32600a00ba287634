"""The arm64 target: a fully-integer INT8 .tflite (litert-torch + ai-edge-quantizer), checked op by op, simulated
faithfully for bias correction, and refused by the device side when corrupt."""
import json

import numpy as np
import pytest

from edgekit.builder.litert import graph, simulate
from edgekit.builder.litert import quantize as tflite_quantize
from edgekit.builder.request import QuantOptions
from edgekit.core import bundle as manifest
from edgekit.core import contract
from edgekit.core.variants import get_variant
from edgekit.device import runtimes
from edgekit.device.metrics import drift
from edgekit.device.preprocess import to_input
from edgekit.errors import QuantizeError

from .conftest import run_cli


def test_arm64_bundle_is_integer_only(arm64_bundle):
    m = manifest.read(arm64_bundle)
    assert m["target"]["name"] == "arm64" and m["target"]["runtime"] == "litert"
    assert m["artifacts"] == {"int8": "model.int8.tflite", "fp32": "model.fp32.tflite"}
    g = graph.read((arm64_bundle / "model.int8.tflite").read_bytes())
    inv = graph.inventory(g)
    assert inv["float_ops"] == [] and inv["float_tensors"] == 0, inv
    assert m["backend_checks"]["integer_only"] is True
    assert set(inv["ops"]) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "PADV2"}, inv
    for op in g.ops:
        if op.kind in simulate.LAYERS:
            w, b = g.tensors[op.inputs[1]], g.tensors[op.inputs[2]]
            assert w.type == "INT8" and w.scale.size == w.shape[0 if op.kind != "DEPTHWISE_CONV_2D" else 3]
            assert np.all(w.zero_point == 0) and np.abs(w.data).max() <= 127  # symmetric per-channel
            assert b.type == "INT32"
    # the device contract: raw pixels as int8 (pixel - 128), int8 logits with their grid in the manifest
    inp, out = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    assert inp.type == "INT8" and float(inp.scale[0]) == 1.0 and int(inp.zero_point[0]) == -128
    assert m["input"]["quantization"] == {"scale": 1.0, "zero_point": -128} and m["input"]["layout"] == "NHWC"
    assert m["fp32_input"]["dtype"] == "float32"
    assert m["output"]["dtype"] == "int8"
    assert m["output"]["quantization"]["scale"] == pytest.approx(float(out.scale[0]))
    # FP32 reference carried alongside, matching PyTorch
    assert m["export"]["parity"]["max_abs_diff"] < 1e-4


def test_int8_input_contract_is_exact():
    px = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    x = contract.pixels_nhwc_int8(get_variant("lite0"))
    q = to_input(px, {**x, "shape": [1, 16, 16, 3]})
    assert q.dtype == np.int8
    assert np.array_equal(q.astype(np.int16) + 128, px.astype(np.int16))


def test_simulation_matches_the_interpreter(arm64_bundle):
    """builder/litert/simulate.py (what bias correction measures with) computes what LiteRT computes, within requantization
    rounding: at most a few output steps on real pixels."""
    m = manifest.read(arm64_bundle)
    px = np.load(arm64_bundle / "golden.npz")["pixels"][:4]
    fg = graph.read((arm64_bundle / "model.fp32.tflite").read_bytes())
    qg = graph.read((arm64_bundle / "model.int8.tflite").read_bytes())
    sim = simulate.run(fg, qg, px)
    runner = runtimes.open_runner("litert", arm64_bundle / "model.int8.tflite")
    x = to_input(px, m["input"])
    real = np.concatenate([runner(x[i:i + 1]) for i in range(len(x))])
    step = m["output"]["quantization"]["scale"]
    assert np.abs(sim["int8"] - real).max() <= 4 * step + 1e-6
    assert (sim["int8"].argmax(1) == real.argmax(1)).mean() >= 0.75
    frunner = runtimes.open_runner("litert", arm64_bundle / "model.fp32.tflite")
    xf = to_input(px, m["fp32_input"])
    freal = np.concatenate([frunner(xf[i:i + 1]) for i in range(len(xf))])
    assert np.abs(sim["float"] - freal).max() < 1e-3


def test_truncated_or_corrupt_tflite_is_refused(arm64_bundle, tmp_path):
    data = (arm64_bundle / "model.int8.tflite").read_bytes()
    for name, blob in (("short", data[:6]), ("half", data[:len(data) // 2]), ("garbage", b"\0" * 4 + b"TFL3" + b"x" * 64),
                       ("text", b"not a model at all")):
        p = tmp_path / f"{name}.tflite"
        p.write_bytes(blob)
        with pytest.raises(runtimes.ModelLoadError):
            runtimes.open_runner("litert", p)
        with pytest.raises(graph.ModelError):
            graph.read(blob)


def test_bench_runs_the_tflite_bundle(arm64_bundle, tmp_path):
    r = run_cli("bench", str(arm64_bundle), "--runs", "3", "--warmup", "1", "--threads", "1", "--json",
                str(tmp_path / "b.json"), env={"EDGEKIT_HISTORY": str(tmp_path / "h.jsonl")}, check=True)
    rep = json.loads((tmp_path / "b.json").read_text())
    assert rep["device"]["runtime"] == "litert" and rep["device"]["runtime_package"] == "ai-edge-litert"
    built = manifest.read(arm64_bundle)["golden"]["build_time_vs_pytorch"]
    for p in ("int8", "fp32"):
        assert rep["golden"]["vs_pytorch"][p]["top1_agreement"] == built[p]["top1_agreement"]
        assert rep["golden"]["vs_pytorch"][p]["logit_sqnr_db"] == pytest.approx(built[p]["logit_sqnr_db"], abs=0.05)
    assert "int8" in r.stdout + r.stderr


def test_op_the_integer_path_cannot_handle_is_named(tmp_path):
    """A model with an op ai-edge-quantizer leaves float: the build-side check names it (and --allow-float lists
    it instead)."""
    import torch

    from edgekit.builder.litert import export as litert_export

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x):
            return torch.sin(self.conv(x)).mean((2, 3))

    c = {**contract.pixels_nhwc(get_variant("lite0")), "shape": [1, 16, 16, 3]}
    litert_export.convert(Odd().eval(), c, tmp_path / "odd.tflite")
    px = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    int8 = {**contract.pixels_nhwc_int8(get_variant("lite0")), "shape": [1, 16, 16, 3]}
    with pytest.raises(QuantizeError, match="SIN"):
        tflite_quantize.quantize_tflite(tmp_path / "odd.tflite", tmp_path / "odd.int8.tflite", px, int8,
                                        QuantOptions())
    assert not (tmp_path / "odd.int8.tflite").exists()
    rep = tflite_quantize.quantize_tflite(tmp_path / "odd.tflite", tmp_path / "odd.int8.tflite", px, int8,
                                          QuantOptions(), allow_float=True)
    assert not rep["integer_only"] and any(f.startswith("SIN") for f in rep["inventory"]["float_ops"])


def test_unknown_calibration_method_for_tflite_is_a_clear_error(tmp_path):
    r = run_cli("build", "--variant", "lite0", "--target", "arm64", "--method", "entropy", "--num-calib", "10",
                "--out", str(tmp_path), "--cache-dir", str(tmp_path / "c"))
    assert r.returncode != 0
    assert "entropy" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "lite0-arm64-int8").exists()


def test_int16_logits_run_integer_only_and_beat_int8_logits(arm64_bundle, tmp_path):
    """The arm64 budget's higher precision: an activation tensor held in int16 makes its producer and consumers
    a16w8 (QUANTIZE ops where they meet int8 ops). On the logits: int16 output, int64 classifier bias, still no
    float op; the simulation follows LiteRT; and against the same model with int8 logits (same images) the logits
    are closer to float."""
    m = manifest.read(arm64_bundle)
    px = np.load(arm64_bundle / "golden.npz")["pixels"]
    fp32 = arm64_bundle / "model.fp32.tflite"
    fg = graph.read(fp32.read_bytes())
    logits = fg.tensors[fg.outputs[0]].name
    opts = QuantOptions(method="percentile")
    real, reports = {}, {}
    for name, int16 in (("int8", ()), ("int16", (logits,))):
        out = tmp_path / f"{name}.tflite"
        reports[name] = tflite_quantize.quantize_tflite(fp32, out, px, m["input"], opts, int16=int16)
        runner = runtimes.open_runner("litert", out)
        x = to_input(px, m["input"])
        real[name] = np.concatenate([runner(x[i:i + 1]) for i in range(len(x))])
    rep = reports["int16"]
    assert rep["integer_only"] and rep["inventory"]["ops"]["QUANTIZE"] == 1, rep["inventory"]  # int8 -> int16 input
    assert rep["output"]["dtype"] == "int16" and rep["output"]["quantization"]["zero_point"] == 0
    assert rep["int16_tensors"] == [logits] and rep["a16w8_ops"] == [f"FULLY_CONNECTED {logits}", f"OUTPUT {logits}"]
    qg = graph.read((tmp_path / "int16.tflite").read_bytes())
    assert qg.tensors[qg.ops[-1].inputs[2]].type == "INT64"
    sim = simulate.run(fg, qg, px[:4])
    assert np.abs(sim["int8"] - real["int16"][:4]).max() <= 4 * reports["int8"]["output"]["quantization"]["scale"]
    freal = runtimes.open_runner("litert", fp32)
    xf = to_input(px, m["fp32_input"])
    ref = np.concatenate([freal(xf[i:i + 1]) for i in range(len(xf))])
    assert drift(ref, real["int16"])["logit_sqnr_db"] > drift(ref, real["int8"])["logit_sqnr_db"]
    with pytest.raises(QuantizeError, match="no tensor named"):
        tflite_quantize.quantize_tflite(fp32, tmp_path / "x.tflite", px, m["input"], opts, int16=("nope",))
    assert not (tmp_path / "x.tflite").exists()
