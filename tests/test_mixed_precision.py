"""Accuracy-aware quantization: error-compensating rounding on the ONNX route, layers in float, the sensitivity
report and the accuracy budget."""
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgekit.builder.calibration import select
from edgekit.builder.onnx import mixed_precision, quantize, saturation, sensitivity
from edgekit.builder.request import Budget, QuantOptions
from edgekit.core.contract import pixels_nchw, preprocessing
from edgekit.core.variants import get_variant
from edgekit.device.imagesets import load_pixels
from edgekit.device.preprocess import to_input
from edgekit.errors import BudgetError

from .conftest import SAMPLE, needs_shared, run_cli


@pytest.fixture(scope="module")
def pixels():
    sel = select(None, 24, 0, None, {})
    return load_pixels(sel.calib, preprocessing(get_variant("lite0"))).pixels


@pytest.fixture(scope="module")
def qdq_pair(lite0_fp32, pixels, tmp_path_factory):
    """lite0 quantized twice on the same images: nearest rounding and error-compensating (GPTQ) rounding."""
    d = tmp_path_factory.mktemp("qdq")
    contract = pixels_nchw(get_variant("lite0"))
    out = {}
    for rounding in ("nearest", "gptq"):
        out[rounding] = d / f"{rounding}.onnx"
        out[rounding + "_report"] = quantize.quantize_qdq(lite0_fp32, out[rounding], pixels, contract,
                                                          QuantOptions(weight_rounding=rounding))
    return out


def _int8_weights(path):
    m = onnx.load(path)
    inits = {i.name: i for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    out = {}
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm") and n.name in mixed_precision.quantized_layers(m):
            out[n.name] = (n, numpy_helper.to_array(inits[producer[n.input[1]].input[0]]))
    return out


def test_gptq_rounding_keeps_the_grid_and_the_int16_pair_limit(qdq_pair):
    report = qdq_pair["gptq_report"]["weight_rounding"]
    assert report["layers"] == 49  # every conv; not the classifier (one sample per image, 1280 inputs)
    near, gptq = _int8_weights(qdq_pair["nearest"]), _int8_weights(qdq_pair["gptq"])
    changed = 0
    for name, (node, q) in gptq.items():
        qn = near[name][1]
        assert q.shape == qn.shape and np.abs(q.astype(int) - qn).max() <= 3  # re-rounded, not re-scaled
        changed += int((q != qn).any())
        if saturation.is_dense(node):
            assert saturation.max_pair_steps(q) <= saturation.PAIR_STEPS + 1
    assert changed >= 40


def test_logits_leave_the_classifier_unquantized(qdq_pair):
    """The classifier's int32 accumulator is dequantized straight to float logits: no uint8 grid on the output
    (it cost lite2 0.9 dB of logit SQNR on x86)."""
    m = onnx.load(qdq_pair["gptq"])
    out = m.graph.output[0].name
    producer = {o: n for n in m.graph.node for o in n.output}
    assert producer[out].op_type == "Gemm"
    assert not [n for n in m.graph.node if out in n.input]
    assert producer[producer[out].input[0]].op_type == "DequantizeLinear"  # its input and weights stay int8


def test_gptq_rounding_lowers_the_logit_error(qdq_pair, lite0_fp32, pixels):
    x = to_input(pixels[:12], pixels_nchw(get_variant("lite0")))
    ref = sensitivity.session_logits(onnx.load(lite0_fp32), x)

    def sqnr(path):
        out = sensitivity.session_logits(onnx.load(path), x)
        return 10 * np.log10((ref ** 2).sum() / ((out - ref) ** 2).sum())

    near, gptq = sqnr(qdq_pair["nearest"]), sqnr(qdq_pair["gptq"])
    print(f"logit SQNR nearest {near:.2f} dB, gptq {gptq:.2f} dB")
    assert gptq > near + 0.3


def test_float_layers_run_in_float_with_their_relu6(qdq_pair, lite0_fp32, pixels):
    fm, qm = onnx.load(lite0_fp32), onnx.load(qdq_pair["gptq"])
    layers = mixed_precision.quantized_layers(qm)
    assert len(layers) == 50
    dw = "/blocks/blocks.1/blocks.1.0/conv_dw/Conv"  # its input is conv_pw + ReLU6, the Clip fused into a Q
    m = mixed_precision.float_layers(fm, qm, [dw, layers[-1]])
    onnx.checker.check_model(m)
    assert len(mixed_precision.quantized_layers(m)) == 48
    node = next(n for n in m.graph.node if n.name == dw)
    clip = next(n for n in m.graph.node if node.input[0] in n.output)
    assert clip.op_type == "Clip"
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    assert float(inits[clip.input[1]]) == 0.0 and float(inits[clip.input[2]]) == 6.0
    fw = {i.name: numpy_helper.to_array(i) for i in fm.graph.initializer}
    fnode = next(n for n in fm.graph.node if n.name == dw)
    assert np.array_equal(inits[node.input[1]], fw[fnode.input[1]])
    x = to_input(pixels[:4], pixels_nchw(get_variant("lite0")))
    ref = sensitivity.session_logits(fm, x)
    err = {k: float(((sensitivity.session_logits(mod, x) - ref) ** 2).sum())
           for k, mod in (("int8", qm), ("all float", mixed_precision.float_layers(fm, qm, layers)))}
    assert err["all float"] < 0.5 * err["int8"], err
    with pytest.raises(KeyError, match="not an int8 layer"):
        mixed_precision.float_layers(fm, qm, ["/no/such/Conv"])


def test_sensitivity_ranks_layers_and_lists_ranges(qdq_pair, lite0_fp32, pixels):
    fm, qm = onnx.load(lite0_fp32), onnx.load(qdq_pair["gptq"])
    x = to_input(pixels[:4], pixels_nchw(get_variant("lite0")))
    layers = mixed_precision.quantized_layers(qm)
    base, effects = sensitivity.rank_layers(fm, qm, x, layers=[layers[0], layers[5], layers[-1]])
    assert [e.gain_db for e in effects] == sorted((e.gain_db for e in effects), reverse=True)
    assert {e.layer for e in effects} == {layers[0], layers[5], layers[-1]}
    for e in effects:
        assert e.gain_db == pytest.approx(e.sqnr_db - base["logit_sqnr_db"])
        assert 0 < e.macs_share < 0.2
    kinds = {e.layer: e.kind for e in effects}
    assert kinds[layers[0]] == "3x3 conv" and kinds[layers[-1]] == "fully connected"
    ranges = sensitivity.activation_ranges(qm)
    assert ranges[0]["tensor"] == "pixels" and (ranges[0]["min"], ranges[0]["max"]) == (0.0, 255.0)
    assert all(r["min"] <= 0 <= r["max"] for r in ranges) and len(ranges) > 50


def test_budget_words():
    b = Budget(max_drop=0.2, min_agreement=0.993)
    assert b.problems({"top1_drop_points": 0.0, "top1_agreement": 0.9933}) == []
    assert b.problems({"top1_drop_points": 0.33, "top1_agreement": 0.99}) == [
        "top-1 drop 0.33 points > 0.2", "agreement 99.00 % < 99.3 %"]
    assert "labelled" in Budget(max_drop=0.2).problems({"top1_agreement": 1.0})[0]
    with pytest.raises(BudgetError):
        Budget()
    with pytest.raises(BudgetError, match="percentage"):
        Budget(min_agreement=99.3)
    with pytest.raises(BudgetError, match="top-1 points"):  # INT8 asked to beat FP32: refused, not searched for
        Budget(max_drop=-5)


@needs_shared
def test_budget_that_cannot_hold_searches_then_fails_saying_which_layers(cache_dir, tmp_path):
    """INT8 must agree with FP32 on every one of 300 photos after 24 calibration images: two of them sit on a near
    tie that no layer choice settles, so the build puts the most sensitive layers in float one at a time (each
    model validated), then fails in one line naming them; no bundle."""
    r = run_cli("build", "--variant", "lite0", "--target", "onnx", "--calib", str(SAMPLE), "--num-calib", "24",
                "--num-val", "300", "--out", str(tmp_path), "--cache-dir", str(cache_dir), "--min-agreement", "100")
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "budget --min-agreement 100 not met" in last and "most sensitive: /" in last
    assert not (tmp_path / "lite0-onnx-int8").exists()
    report = json.loads((tmp_path / "lite0-onnx-int8.budget-not-met.json").read_text())
    assert [t["method"] for t in report["search"][:2]] == ["minmax", "percentile"]
    # INT8-aware fine-tuning before any layer is raised (in the search when it beat its post-training model)
    tuned = report["int8_aware"]
    assert tuned["options"]["epochs"] > 0 and "held_out_before" in tuned
    steps = [(t["int8_aware"], t["raised_layers"]) for t in report["search"]]
    assert steps[:3] == ([(False, 0), (False, 0), (True, 0)] if tuned["kept"] else [(False, 0), (False, 0), (False, 1)])
    assert len(report["search"]) >= 3 and report["search"][-1]["raised_layers"] >= 1
    assert report["raised_to"] == "float"
    assert len(report["ranking"]["layers"]) == 50 and report["problems"]
    assert len(list((cache_dir / "mixed").iterdir())) >= 2  # the search built (and validated) mixed models
    ties = report["near_ties"]  # every model's flips, against the FP32 top-2 margins of the images they flip
    assert ties["models"] == len(report["search"]) and ties["images"] == 300
    assert ties["relative_margin_noise"] > 0 and ties["expected_disagreements_at_half_noise"] <= ties["expected_disagreements"]
    flips = [f["flipped_in_models"] for f in ties["flipped"]]
    assert flips == sorted(flips, reverse=True) and all(1 <= n <= ties["models"] for n in flips)
    most = max(t["top1_agreement"] for t in report["search"])
    assert len(ties["flipped"]) >= round(300 * (1 - most))  # at least the best model's disagreements
    assert "near ties:" in last and "against 0 allowed" in last


@needs_shared
def test_budget_met_by_the_default_is_recorded_with_its_near_ties(cache_dir, tmp_path):
    """A budget the default model keeps: no search, but the manifest says which budget held, and how many of the
    validation images sit within the INT8 noise of a tie (the same stages as the test above: cached)."""
    r = run_cli("build", "--variant", "lite0", "--target", "onnx", "--calib", str(SAMPLE), "--num-calib", "24",
                "--num-val", "300", "--out", str(tmp_path), "--cache-dir", str(cache_dir), "--max-drop", "100",
                "--min-agreement", "50", "--json")
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    m = m[0] if isinstance(m, list) else m
    mixed = m["mixed_precision"]
    assert mixed["budget"] == {"max_drop_points": 100.0, "min_agreement": 0.5} and mixed["layers"] == []
    assert m["precision"] == "int8" and len(mixed["search"]) == 1
    ties = mixed["near_ties"]
    assert ties["models"] == 1 and ties["images"] == 300 and ties["allowed_disagreements"] == 150
    assert len(ties["flipped"]) == m["validation"]["disagreements"]
    assert "near ties:" in r.stderr and "budget: met by post-training quantization (minmax ranges)" in r.stderr


@needs_shared
def test_arm64_budget_raises_activations_to_int16_then_fails_naming_them(cache_dir, tmp_path):
    """arm64: after both range methods, the budget holds the cheapest sensitive activations in int16 (a16w8 ops,
    each model quantized, bias-corrected and validated in LiteRT), then fails in one line; no bundle."""
    r = run_cli("build", "--variant", "lite0", "--target", "arm64", "--calib", str(SAMPLE), "--num-calib", "24",
                "--num-val", "300", "--out", str(tmp_path), "--cache-dir", str(cache_dir), "--min-agreement", "100")
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "budget --min-agreement 100 not met" in last and "in int16 activations" in last, last
    assert not (tmp_path / "lite0-arm64-int8").exists()
    report = json.loads((tmp_path / "lite0-arm64-int8.budget-not-met.json").read_text())
    assert report["raised_to"] == "int16 activations"
    assert [t["method"] for t in report["search"][:2]] == ["percentile", "minmax"]
    ranked = report["ranking"]["layers"]
    assert ranked and all(e["macs_share"] <= 0.01 for e in ranked)  # only tensors int16 can afford
    assert {e["layer"] for e in ranked} == {"logits", "mean#59"}
    raised = [t for t in report["search"] if t["raised_layers"]]
    assert [t["raised_layers"] for t in raised] == list(range(1, len(raised) + 1)) and raised
    assert all(t["logit_sqnr_db"] is not None for t in raised)


def test_analyze_cli_reports_every_layer_sorted(default_build, cache_dir, tmp_path):
    """On the default build's cached export and quantize stages (same calibration), 2 images per layer model."""
    r = run_cli("analyze", "--variant", "lite0", "--target", "x86", "--num-calib", "20", "--images", "2",
                "--top", "5", "--out", str(tmp_path), "--cache-dir", str(cache_dir), check=True)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("lite0 on x86: all int8 logit SQNR") and len(lines) == 2 + 1 + 5 + 2
    report = json.loads((tmp_path / "lite0-x86.sensitivity.json").read_text())
    assert len(report["layers"]) == 50 and report["images"] == 2
    gains = [e["gain_db"] for e in report["layers"]]
    assert gains == sorted(gains, reverse=True)
    assert report["calibration"]["method"] == "minmax" and report["calibration"]["weight_rounding"] == "gptq"
    assert report["timings"]["quantize"]["cached"]  # the build's quantize stage, not a second one


def test_analyze_arm64_ranks_every_activation_in_int16(arm64_bundle, cache_dir, tmp_path):
    """arm64: each activation tensor of the integer .tflite in int16 on its own (simulated), on the arm64 fixture's
    cached stages; every one of lite0's 61 op outputs is ranked, with the MAC share its a16w8 ops would cost."""
    r = run_cli("analyze", "--variant", "lite0", "--target", "arm64", "--num-calib", "20", "--images", "2",
                "--top", "3", "--out", str(tmp_path), "--cache-dir", str(cache_dir), check=True)
    assert r.stdout.startswith("lite0 on arm64: all int8 logit SQNR") and "int16" in r.stdout.splitlines()[1]
    report = json.loads((tmp_path / "lite0-arm64.sensitivity.json").read_text())
    layers = report["layers"]
    assert len(layers) == 61 and report["runtime"].startswith("edgekit integer simulation")
    assert [e["gain_db"] for e in layers] == sorted((e["gain_db"] for e in layers), reverse=True)
    assert report["timings"]["quantize"]["cached"]
    by_name = {e["layer"]: e for e in layers}
    assert by_name["logits"]["kind"] == "fully connected" and by_name["logits"]["macs_share"] < 0.01
    assert by_name["conv_stem"]["macs_share"] > 0.02  # the stem conv and its depthwise consumer
    assert all(e["tensor"] for e in layers)
    assert {a["dtype"] for a in report["activation_ranges"]} == {"int8"}
