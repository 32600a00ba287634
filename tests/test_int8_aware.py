"""INT8-aware fine-tuning: the int8 model's integers tuned through the route's own simulated arithmetic towards the
FP32 model. Small configurations (a few dozen images, seconds per epoch); the benchmark runs the real ones
(benchmarks/int8_aware.py)."""
import dataclasses
import hashlib
import io

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgekit import pipeline
from edgekit.analysis.budget import Chosen, meet_budget
from edgekit.builder.cache import Cache
from edgekit.builder.onnx import quantize, saturation, tune
from edgekit.builder.options import BuildOptions, requests
from edgekit.builder.request import Budget, QuantOptions, TuneOptions
from edgekit.builder.route import route_for
from edgekit.builder.stages import Run
from edgekit.builder.validate import stage_validate
from edgekit.core import bundle as manifest
from edgekit.core.contract import pixels_nchw, preprocessing
from edgekit.core.variants import get_variant
from edgekit.device import metrics
from edgekit.device.imagesets import load_pixels
from edgekit.builder import int8_aware


# post-training quantization without its refinements (no bias correction, nearest rounding): a model with an error
# INT8-aware fine-tuning can clearly reduce, so the tests see its effect on a few images
WEAK = QuantOptions(method="minmax", bias_correction=False, weight_rounding="nearest")
FAST = TuneOptions(epochs=4, batch_size=8)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _request(tmp_path, target: str, num_calib: int = 24, num_val: int = 48, calib: str | None = None):
    reqs, _ = requests(BuildOptions(calib=calib, num_calib=num_calib, num_val=num_val), "lite0", target,
                       tmp_path / "dist")
    return dataclasses.replace(next(reqs), quant=WEAK)


@pytest.fixture(scope="module")
def weak_qdq(lite0_fp32, tmp_path_factory):
    """lite0 quantized weakly on 24 images of the embedded recipe, and 48 held-out views of other photographs."""
    from edgekit.builder.calibration import select

    sel = select(None, 24, 48, None, {})
    pp = preprocessing(get_variant("lite0"))
    calib, val = load_pixels(sel.calib, pp).pixels, load_pixels(sel.val, pp).pixels
    out = tmp_path_factory.mktemp("weak") / "model.int8.onnx"
    quantize.quantize_qdq(lite0_fp32, out, calib, pixels_nchw(get_variant("lite0")), WEAK)
    return out, calib, val


def _tuned(lite0_fp32, weak_qdq, options=FAST):
    path, calib, _ = weak_qdq
    qm = onnx.load(path)
    student = tune.QDQStudent(qm, ranges=options.range_lr > 0)
    x = torch.from_numpy(calib).permute(0, 3, 1, 2).float()
    result = int8_aware.tune(student, x, tune.Teacher(onnx.load(lite0_fp32)), None, options)
    written = student.write_back() if result.kept else None
    buf = io.BytesIO()
    onnx.save(qm, buf)
    return qm, result, written, buf.getvalue()


def _ort_logits(model: onnx.ModelProto, pixels: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = pixels.transpose(0, 3, 1, 2).astype(np.float32)
    return np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])


def test_tuned_integers_follow_fp32_better_on_images_they_never_saw(lite0_fp32, weak_qdq):
    path, _, val = weak_qdq
    qm, result, written, _ = _tuned(lite0_fp32, weak_qdq)
    assert result.kept and result.best.logit_sqnr_db > result.before.logit_sqnr_db
    assert written["activation_grids"] > 0 and written["layers"] == 50
    before_inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    moved = [i.name for i in qm.graph.initializer if not np.array_equal(numpy_helper.to_array(i), before_inits[i.name])]
    assert len(moved) > 10  # biases and grids written back
    # onnxruntime on held-out views of photographs the calibration never used
    ref = _ort_logits(onnx.load(lite0_fp32), val)
    before = metrics.drift(ref, _ort_logits(onnx.load(path), val))["logit_sqnr_db"]
    after = metrics.drift(ref, _ort_logits(qm, val))["logit_sqnr_db"]
    assert after > before + 1.0, (before, after)
    print(f"held-out SQNR {before:.2f} -> {after:.2f} dB")
    # the same format: int8 weights on their grids, symmetric, dense layers within the int16 pair limit
    old = onnx.load(path)
    assert [n.op_type for n in old.graph.node] == [n.op_type for n in qm.graph.node]
    inits = {i.name: numpy_helper.to_array(i) for i in qm.graph.initializer}
    producer = {o: n for n in qm.graph.node for o in n.output}
    for node in qm.graph.node:
        if node.name in tune.QDQStudent(old).layers:
            q = inits[producer[node.input[1]].input[0]]
            assert q.dtype == np.int8 and np.abs(q.astype(int)).max() <= 127
            if saturation.is_dense(node):
                assert saturation.max_pair_steps(q) <= saturation.PAIR_STEPS + 1


def test_the_same_seed_gives_the_same_bytes(lite0_fp32, weak_qdq):
    opts = dataclasses.replace(FAST, epochs=2)
    first, second = _tuned(lite0_fp32, weak_qdq, opts), _tuned(lite0_fp32, weak_qdq, opts)
    assert first[1].kept and first[3] == second[3]
    other = _tuned(lite0_fp32, weak_qdq, dataclasses.replace(opts, seed=1))
    assert other[1].kept and other[3] != first[3]


def test_a_tuning_that_does_not_beat_post_training_keeps_it(lite0_fp32, weak_qdq):
    """Weights pushed far off their grid (a learning rate no one would use): no held-out gain, so the student is back
    at its starting integers (written back, they are the post-training model's) and the result says so."""
    path, calib, _ = weak_qdq
    qm = onnx.load(path)
    student = tune.QDQStudent(qm, ranges=True)
    x = torch.from_numpy(calib).permute(0, 3, 1, 2).float()
    opts = dataclasses.replace(FAST, epochs=1, lr=50.0, bias_lr=1.0, range_lr=1.0)
    result = int8_aware.tune(student, x, tune.Teacher(onnx.load(lite0_fp32)), None, opts)
    assert not result.kept and result.best_epoch == 0 and result.epochs[0].logit_sqnr_db < result.before.logit_sqnr_db
    written = student.write_back()
    assert written["weights_changed"] == 0
    before = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    for i in qm.graph.initializer:
        assert np.array_equal(numpy_helper.to_array(i), before[i.name]), i.name


def test_build_int8_aware_ships_the_tuned_int8_beside_the_original_fp32(tmp_path, cache_dir):
    """The pipeline, onnx target: the same graph with other integers, the FP32 twin byte for byte the post-training
    build's, the record in the manifest and the model card, and better figures on the validation images."""
    req = _request(tmp_path, "onnx")
    c = Cache(cache_dir)
    plain, m0 = pipeline.build(dataclasses.replace(req, out_dir=tmp_path / "plain"), c)
    tuned, m1 = pipeline.build(dataclasses.replace(req, tune=FAST, out_dir=tmp_path / "tuned"), c)
    rec = m1["int8_aware"]
    # kept on the held-out calibration images, shipped because it also scores better on the validation images
    assert rec["kept"] and rec["held_out_after"]["logit_sqnr_db"] > rec["held_out_before"]["logit_sqnr_db"]
    assert rec["shipped"], rec["validation"]
    assert rec["train_images"] + rec["held_out_images"] == m0["calibration"]["images_used"]
    assert m1["timings"]["int8-aware"]["seconds"] > 0 and "int8-aware" not in m0["timings"]
    assert _digest(plain / m0["artifacts"]["fp32"]) == _digest(tuned / m1["artifacts"]["fp32"])
    assert _digest(plain / m0["artifacts"]["int8"]) != _digest(tuned / m1["artifacts"]["int8"])
    g0, g1 = (onnx.load(p / m["artifacts"]["int8"]).graph for p, m in ((plain, m0), (tuned, m1)))
    assert [(n.op_type, list(n.input)) for n in g0.node] == [(n.op_type, list(n.input)) for n in g1.node]
    assert m1["validation"]["logit_sqnr_db"] > m0["validation"]["logit_sqnr_db"] + 1.0
    assert "INT8-aware fine-tuning" in (tuned / manifest.MODEL_CARD).read_text()


@dataclasses.dataclass(frozen=True)
class SqnrBudget(Budget):
    """The budget search judged on logit SQNR: a continuous figure, where agreement on a few dozen views moves by
    whole images (near ties) and would make the threshold below a coin toss."""
    min_sqnr_db: float = 0.0

    def problems(self, drift: dict) -> list[str]:
        got = drift["logit_sqnr_db"]
        return [] if got >= self.min_sqnr_db else [f"logit SQNR {got:.2f} dB < {self.min_sqnr_db:.2f}"]


def test_the_budget_tries_int8_aware_before_raising_layers(tmp_path, cache_dir):
    """A budget the post-training models miss and the tuned model meets: the search stops there, plain int8, and
    says which step met it. The threshold lies between the best post-training model and the tuned one, both read
    from the same cached stages the search then runs."""
    req = _request(tmp_path, "onnx")
    run = Run(req, Cache(cache_dir))
    route = route_for(req)
    val = {}
    for method in ("minmax", "percentile"):
        r = dataclasses.replace(req, quant=dataclasses.replace(WEAK, method=method))
        arts = route.artifacts(run, r)
        val[method] = (r, arts, stage_validate(run, r, arts.tgt).meta)
    score = {m: (v[2]["top1_agreement"], v[2]["logit_sqnr_db"]) for m, v in val.items()}
    best = max(score, key=score.get)  # the post-training model the budget tunes (no labels: drop is not scored)
    treq = dataclasses.replace(val[best][0], tune=TuneOptions())
    arts, record = route.tune(run, treq, val[best][1])
    assert record["kept"]
    tuned = stage_validate(run, treq, arts.tgt).meta["logit_sqnr_db"]
    plain = max(s[1] for s in score.values())
    assert tuned > plain + 0.5, (score, tuned)

    breq = dataclasses.replace(req, budget=SqnrBudget(min_agreement=0.01, min_sqnr_db=(tuned + plain) / 2))
    run = Run(breq, Cache(cache_dir))
    st = Chosen(val["minmax"][1], stage_validate(run, breq, val["minmax"][1].tgt), breq.quant)
    got = meet_budget(run, route, st)
    assert got.tuning and got.tuning["kept"] and got.base is not None
    assert got.mixed["layers"] == [] and got.mixed["met_by"].startswith("INT8-aware fine-tuning")
    assert [s["int8_aware"] for s in got.mixed["search"]] == [False, False, True]
    assert not [k for k in run.log.stages if k.startswith(("sensitivity", "mixed"))]  # nothing ranked or raised


def test_arm64_int8_aware_keeps_the_integer_only_graph(tmp_path):
    """The litert route on the tiny variant (tests/tiny.py), post-training with nearest rounding (an error tuning
    can remove): the tuned .tflite, read from its stage's cache entry whether or not it ships, is integer-only with
    the post-training model's ops and other integers; the bundle's FP32 twin is the post-training build's, and the
    model that ships is the one that scores better on the validation images."""
    import edgekit
    from edgekit.analysis.choice import score
    from edgekit.builder.litert import graph
    from tests import tiny

    cache = tmp_path / "cache"
    common = dict(weights=tiny.checkpoint(tmp_path / "tiny.pt"), num_calib=20, num_val=32, rounding="nearest",
                  cache_dir=cache)
    with tiny.registered(), pytest.warns(UserWarning):
        b0 = edgekit.build(None, "arm64", out=tmp_path / "a", **common)
        b1 = edgekit.build(None, "arm64", out=tmp_path / "b", int8_aware=True, **common)
    m0, m1 = b0.manifest, b1.manifest
    rec = m1["int8_aware"]
    assert rec["kept"], rec  # nearest rounding leaves a systematic error the tuning removes
    entry = next(e.parent for e in (cache / "int8-aware-tflite").glob("*/entry.json"))
    tuned = (entry / "model.int8.tflite").read_bytes()
    inv = graph.inventory(graph.read(tuned))
    assert not inv["float_ops"] and inv["ops"] == m0["backend_checks"]["ops"]
    assert tuned != (b0.path / m0["artifacts"]["int8"]).read_bytes()
    assert rec["written"]["weights"] > 0 and rec["written"]["layers"] > 0
    assert _digest(b0.path / m0["artifacts"]["fp32"]) == _digest(b1.path / m1["artifacts"]["fp32"])
    post, tun = rec["validation"]["post_training"], rec["validation"]["tuned"]
    assert rec["shipped"] == (score(tun) >= score(post))
    assert ((b1.path / m1["artifacts"]["int8"]).read_bytes() == tuned) == rec["shipped"]
    assert m1["validation"]["images"] == 32 and m1["backend_checks"]["integer_only"]
