"""`edgekit predict` and `edgekit.load(...).classify`: images on every target give the top-1 the golden set records,
video frames give what the same still images give, and bad input ends in one line with the summary so far."""
import json
import re
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import edgekit
from edgekit.device import predict as predict_mod
from edgekit.errors import ImageError, ManifestError, StreamError, UsageError

from .conftest import SAMPLE, needs_shared, run_cli


def _json_lines(stdout: str) -> tuple[list[dict], dict]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert "summary" in lines[-1], lines[-1]
    return lines[:-1], lines[-1]["summary"]


@pytest.mark.parametrize("target", ["x86", "onnx", "arm64"])
def test_predict_gives_the_golden_top1_on_every_target(sample_builds, target):
    bundle, built = sample_builds[target]
    g = np.load(bundle / "golden.npz")
    paths = [SAMPLE / str(i) for i in g["ids"]]  # the photographs the golden inputs were made from
    assert len(paths) == 32 and all(p.is_file() for p in paths)
    model = edgekit.load(bundle)
    for p, px in zip(paths, g["pixels"]):  # one preprocessing path: predict feeds what the golden set recorded
        assert np.array_equal(model.pixels(p), px), p
    expected = model.infer(g["pixels"]).argmax(1).tolist()  # the INT8 artifact on the golden inputs
    r = run_cli("predict", str(bundle), *map(str, paths), "--json", "--top", "1", check=True)
    results, summary = _json_lines(r.stdout)
    assert [x["input"] for x in results] == [str(p) for p in paths]
    assert [x["predictions"][0]["index"] for x in results] == expected
    # and as often PyTorch's top-1 (which the golden set records) as the build measured on the same inputs
    agree = np.mean(np.array(expected) == g["torch_logits"].argmax(1))
    assert agree == built["golden"]["build_time_vs_pytorch"]["int8"]["top1_agreement"]
    assert summary["classified"] == 32 and set(summary["latency_ms"]) == {"decode", "prepare", "inference"}
    # 32 files named: the summary names the first and the last, not every one
    assert summary["source"] == f"32 inputs ({paths[0]} ... {paths[-1]})"
    # their names carry WordNet ids: top-1 against those labels, the golden set's own count
    assert summary["labelled"] == 32
    assert summary["top1"] == pytest.approx(np.mean(np.array(expected) == g["labels"]))
    assert [p[0].index for p in model.classify_batch(paths[:8], top=1)] == expected[:8]
    # the FP32 artifact gives the top-1 of PyTorch's FP32 logits that the golden set records
    fp32 = edgekit.load(bundle, precision="fp32")
    assert [fp32.classify(p, top=1)[0].index for p in paths] == g["torch_logits"].argmax(1).tolist()


def test_classify_takes_paths_pil_images_and_arrays(tiny_bundle, tmp_path):
    bundle = tiny_bundle
    model = edgekit.load(bundle)
    path = bundle / "example.png"
    top5 = model.classify(path)
    im = Image.open(path).convert("RGB")
    assert model.classify(im) == top5 == model.classify(np.asarray(im))
    assert [p.rank for p in top5] == list(range(1, min(5, len(model.class_names)) + 1))
    probs = [p.probability for p in top5]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    best = top5[0]
    assert best.name == model.class_names[best.index] == "cat dog fox".split()[best.index]
    assert best.wnid is None and model.class_wnids == []  # a bundle of custom classes: no WordNet ids
    assert model.contract == model.manifest["input"] and model.runtime == "openvino"
    with pytest.raises(ImageError, match="HxWx3 uint8"):
        model.classify(np.zeros((10, 10), np.uint8))
    with pytest.raises(UsageError, match="int8 or fp32"):
        edgekit.load(bundle, precision="int4")
    tampered = tmp_path / "t"
    shutil.copytree(bundle, tampered)
    data = bytearray((tampered / "model.int8.bin").read_bytes())
    data[100] ^= 0xFF
    (tampered / "model.int8.bin").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="does not match its sha256"):
        edgekit.load(tampered)


@pytest.fixture()
def clip(tmp_path) -> dict:
    """A lossless video (FFV1) of 8 sample photographs at 320x256, and the same frames as PNG stills."""
    if not SAMPLE.is_dir():
        pytest.skip("../shared/data/imagenet-sample is absent")
    frames = [np.asarray(Image.open(p).convert("RGB").resize((320, 256))) for p in sorted(SAMPLE.iterdir())[:8]]
    stills = []
    for i, f in enumerate(frames):
        stills.append(tmp_path / f"{i}.png")
        Image.fromarray(f).save(stills[-1])
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 10, (320, 256))
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    return {"video": video, "stills": stills}


def test_predict_on_a_video_matches_the_still_images(tiny_bundle, clip):
    bundle = str(tiny_bundle)
    still, _ = _json_lines(run_cli("predict", bundle, *map(str, clip["stills"]), "--json", check=True).stdout)
    r = run_cli("predict", bundle, str(clip["video"]), "--json", check=True)
    frames, summary = _json_lines(r.stdout)
    assert [f["frame"] for f in frames] == list(range(8))
    assert [f["predictions"][0]["index"] for f in frames] == [s["predictions"][0]["index"] for s in still]
    assert summary["read"] == summary["classified"] == 8 and summary["per_second"] > 0
    assert set(summary["latency_ms"]) == {"capture", "prepare", "inference"}
    assert f"summary of {clip['video']}: 8 frames read, 8 classified" in r.stderr and "frames/s" in r.stderr
    # every 3rd frame; as text off a terminal, one line per classified frame
    r = run_cli("predict", bundle, str(clip["video"]), "--every", "3", "--top", "1", check=True)
    lines = r.stdout.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["frame     0", "frame     3", "frame     6"]
    assert lines[1].split(": ")[1].rsplit(" ", 1)[0] == still[3]["predictions"][0]["name"]
    assert "8 frames read, 3 classified" in r.stderr


def _serve_cut(data: bytes, cut: int) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 that sends the first `cut` bytes of `data` and drops the connection: a stream
    that stops."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.end_headers()
            self.wfile.write(data[:cut])
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_stream_that_stops_ends_with_the_summary_and_one_error(tiny_bundle, clip):
    data = clip["video"].read_bytes()
    server = _serve_cut(data, len(data) * 5 // 8)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.avi"
        r = run_cli("predict", str(tiny_bundle), url, "--json")
    finally:
        server.shutdown()
        server.server_close()
    frames, summary = _json_lines(r.stdout)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and "stopped sending frames" in errors[0], r.stderr
    assert 0 < len(frames) < 8 and summary["classified"] == len(frames) and summary["stopped"]
    assert f"after {len(frames)} of 8" in errors[0]
    assert "Traceback" not in r.stderr


def test_a_truncated_local_video_is_read_to_its_end_with_a_warning(tiny_bundle, clip, tmp_path):
    data = clip["video"].read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:len(data) * 5 // 8])
    r = run_cli("predict", str(tiny_bundle), str(cut), "--json", check=True)
    frames, _ = _json_lines(r.stdout)
    assert 0 < len(frames) < 8
    assert f"warning: {cut} ended after {len(frames)} of the 8 frames its header announces" in r.stderr


def test_a_whole_video_over_http_is_a_file_not_a_stopped_stream(tiny_bundle, clip):
    data = clip["video"].read_bytes()
    server = _serve_cut(data, len(data))
    try:
        r = run_cli("predict", str(tiny_bundle), f"http://127.0.0.1:{server.server_address[1]}/clip.avi",
                    "--json", check=True)
    finally:
        server.shutdown()
        server.server_close()
    frames, summary = _json_lines(r.stdout)
    assert len(frames) == 8 and summary["stopped"] is None


def test_frames_api_keeps_the_summary_when_a_source_stops(tiny_bundle):
    class Stops:
        name = "fake camera"

        def __init__(self):
            self.n, self.closed = 0, False

        def read(self):
            self.n += 1
            if self.n > 3:
                raise StreamError("fake camera stopped sending frames after 3")
            return np.full((240, 320, 3), 40 * self.n, np.uint8)

        def close(self):
            self.closed = True

    model, source = edgekit.load(tiny_bundle), Stops()
    summary = predict_mod.Summary("frame", source.name)
    got = []
    with pytest.raises(StreamError):
        for result in predict_mod.frames(model, source, 2, 1, summary):
            got.append(result)
    assert len(got) == 3 and summary.to_dict()["classified"] == 3 and source.closed
    assert summary.stopped == "fake camera stopped sending frames after 3"


class _Frames:
    """A frame source of given frames that records which thread reads it and how far it has read."""

    def __init__(self, frames, name="frames"):
        self.frames, self.name, self.n, self.closed, self.threads = list(frames), name, 0, False, set()
        self.consumed, self.ahead = (lambda: self.n), []  # the consumer's count, where a test gives one

    def read(self):
        self.threads.add(threading.current_thread().name)
        if self.n == len(self.frames):
            return None
        self.n += 1
        self.ahead.append(self.n - self.consumed())
        return self.frames[self.n - 1]

    def close(self):
        self.closed = True


def test_frames_are_prepared_ahead_in_their_own_thread_with_results_identical_to_one_at_a_time(tiny_bundle, clip):
    """Capture and preparation run a bounded number of frames ahead of inference, in another thread; every frame is
    classified once, in order, with the probabilities the one-step-at-a-time path gives; stopping early stops the
    thread before the source is closed."""
    cap = cv2.VideoCapture(str(clip["video"]))
    frames = []
    while (ok_frame := cap.read())[0]:
        frames.append(cv2.cvtColor(ok_frame[1], cv2.COLOR_BGR2RGB))
    cap.release()
    model = edgekit.load(tiny_bundle)
    expected = [model.predictions(model.run(model.prepare(f))[0], 3) for f in frames]
    source, summary = _Frames(frames, "clip"), predict_mod.Summary("frame", "clip")
    got, ahead, bound = [], [], predict_mod.AHEAD + 1  # the queue, plus the one in the reader's hands
    source.consumed = lambda: len(got)
    for result in predict_mod.frames(model, source, 3, 1, summary):
        got.append(result)
        # a slow consumer: the reader goes ahead until the queue is full (waited for, not slept on) ...
        full = min(len(frames), len(got) + bound)
        deadline = time.monotonic() + 30
        while source.n < full and time.monotonic() < deadline:
            threading.Event().wait(0.005)
        ahead.append(source.n - len(got))
    assert [r.frame for r in got] == list(range(len(frames))) and summary.read == summary.classified == len(frames)
    assert [r.predictions for r in got] == expected  # the same classes and the same probabilities
    assert source.threads == {"edgekit-prepare"} and source.closed
    # ... and never further: measured by the source at each read, whatever the timing
    assert max(ahead) == bound and ahead[-1] == 0
    assert max(source.ahead) <= bound + 1  # + the result on its way from the generator to `got`
    # a consumer that stops after two frames: the reader thread is gone before the source is closed
    source, summary = _Frames(frames), predict_mod.Summary("frame", "clip")
    it = predict_mod.frames(model, source, 1, 1, summary)
    assert [next(it).frame, next(it).frame] == [0, 1]
    it.close()
    assert source.closed and summary.read == 2 and summary.classified == 2
    assert not [t for t in threading.enumerate() if t.name == "edgekit-prepare"]


def test_preparation_is_the_one_call_resize_pixel_for_pixel():
    """The two-call landscape resize (the crop's columns only in the second pass) and the integer input of arm64
    give exactly the pixels and tensors of the one-call path that validated the bundles, on shapes of every kind."""
    from PIL import Image as PILImage

    from edgekit.device import preprocess

    rng = np.random.default_rng(0)
    shapes = [(640, 480), (480, 640), (1920, 1080), (256, 256), (257, 255), (300, 256), (100, 80), (224, 224),
              (341, 256), (4000, 3000)] + [tuple(int(v) for v in rng.integers(24, 1400, 2)) for _ in range(30)]
    for w, h in shapes:
        img = PILImage.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8), "RGB")
        for resize, crop in ((256, 224), (274, 240), (224, 224)):
            nw, nh = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
            if nw * nh > preprocess.MAX_RESIZED * resize * resize:
                continue  # the absurd shapes' own path (test_hostile_inputs)
            left, top = int(round((nw - crop) / 2.0)), int(round((nh - crop) / 2.0))
            for interpolation in ("bicubic", "bilinear"):
                one_call = np.asarray(img.resize((nw, nh), preprocess._INTERP[interpolation])
                                      .crop((left, top, left + crop, top + crop)))
                assert np.array_equal(preprocess.resize_crop(img, resize, crop, interpolation), one_call), (w, h)
    px = rng.integers(0, 256, (224, 224, 3), np.uint8)
    for q, dtype in (({"scale": 1.0, "zero_point": -128}, "int8"), ({"scale": 1.0, "zero_point": 0}, "uint8")):
        contract = {"layout": "NHWC", "dtype": dtype, "mean": [0, 0, 0], "std": [1, 1, 1], "quantization": q}
        float_path = np.clip(np.round(px[None].astype(np.float32) / q["scale"] + q["zero_point"]),
                             np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
        got = preprocess.to_input(px, contract)
        assert got.dtype == np.dtype(dtype) and np.array_equal(got, float_path)


def test_predict_refuses_bad_input_in_one_line(tiny_bundle, tmp_path):
    bundle = str(tiny_bundle)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.jpg").write_bytes(b"a text file named .jpg")
    cases = [([], "give images"), ([str(tmp_path / "missing.jpg")], "no such file"),
             ([str(tmp_path / "notes.txt")], "neither an image"), (["--camera", "7"], "no camera at index 7"),
             ([str(tmp_path / "nothing.mp4"), "--top", "0"], "at least 1"),
             ([str(Path(bundle) / "example.png"), "--threads", "0"], "--threads")]
    for args, message in cases:
        r = run_cli("predict", bundle, *args)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], (args, r.stderr)
    # an unreadable image among readable ones: their results, the summary, then one error line
    good = str(Path(bundle) / "example.png")
    r = run_cli("predict", bundle, good, str(tmp_path / "broken.jpg"), good, "--json")
    results, summary = _json_lines(r.stdout)
    assert len(results) == 2 and summary["failed"] == 1 and summary["read"] == 3
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and last.startswith("error: 1 of 3 images could not be read")
    assert "broken.jpg" in last and "cannot identify image file" in last  # and Pillow's reason
    with pytest.raises(UsageError, match="threads=0"):
        edgekit.load(bundle, threads=0)


@needs_shared
def test_predict_on_a_directory(default_build):
    r = run_cli("predict", str(default_build[0]), str(SAMPLE), "--top", "2", check=True)
    blocks = r.stdout.strip().split("\n" + str(SAMPLE))
    assert len(blocks) == len(list(SAMPLE.iterdir())) and "500 images read, 500 classified" in r.stderr
    assert re.search(r"top-1 \d+\.\d\d % \[\d+\.\d, \d+\.\d\] \(95 % interval\) on the 500 with a label", r.stderr), r.stderr


def test_predict_reports_top1_on_class_folders_followed_through_links(tiny_bundle, tmp_path):
    """Labelled folders (one per class, here symlinks to where the photos lie, as people arrange them): predict ends
    with top-1, per class in --json; the search follows the links once (a loop is read once, not forever)."""
    bundle = tiny_bundle
    names = json.loads((bundle / "manifest.json").read_text())["class_names"]
    store, view = tmp_path / "store", tmp_path / "view"
    rng = np.random.default_rng(0)
    for c in (1, 2):  # folders named by the class index, one of the ways bench --images reads labels too
        (store / f"c{c}").mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (96, 128, 3), np.uint8)).save(store / f"c{c}" / f"{i}.png")
        view.mkdir(exist_ok=True)
        (view / str(c)).symlink_to(store / f"c{c}", target_is_directory=True)
    (store / "c1" / "loop").symlink_to(view, target_is_directory=True)  # a loop back up
    r = run_cli("predict", str(bundle), str(view), "--json", "--top", "1", check=True)
    results, summary = _json_lines(r.stdout)
    assert len(results) == 6 and summary["labelled"] == 6
    top1 = [x["predictions"][0]["index"] for x in results]
    expected = np.mean([t == int(Path(x["input"]).relative_to(view).parts[0]) for t, x in zip(top1, results)])
    assert summary["top1"] == pytest.approx(expected)
    assert [(p["class"], p["images"]) for p in summary["per_class"]] == [(names[1], 3), (names[2], 3)]
    assert "with a label" in r.stderr


def test_the_model_card_pasted_into_a_fresh_venv_runs_bench_predict_and_the_api(device_venv):
    """conftest.device_venv ran the card's bash block as written; here its output, and its Python block."""
    out, bundle = device_venv.card.stdout, device_venv.bundle
    expected = edgekit.load(bundle).classify(bundle / "example.png", top=3)
    assert "\nverdict: INT8 is " in out and "int8 instructions:" in out
    assert f"   1  {expected[0].probability:6.3f}  {expected[0].wnid:10} {expected[0].name}" in out
    block = re.findall(r"```python\n(.*?)```", device_venv.card_text, re.S)
    assert len(block) == 1
    r = subprocess.run([str(device_venv.venv / "bin" / "python"), "-c", block[0]], capture_output=True, text=True,
                       cwd=bundle, env=device_venv.env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{p.rank} {p.name} {round(p.probability, 3)}" for p in expected]
    # the venv has the device side only
    r = subprocess.run([str(device_venv.venv / "bin" / "python"), "-c", "import importlib.util as u; "
                        "print([m for m in ('torch', 'onnx', 'cv2') if u.find_spec(m)])"], capture_output=True,
                       text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_the_device_venv_predicts_the_golden_top1(sample_builds, device_venv):
    """The same check from the slim install the model card makes (openvino only, no torch, no onnx)."""
    bundle, _ = sample_builds["x86"]
    g = np.load(bundle / "golden.npz")
    paths = [str(SAMPLE / str(i)) for i in g["ids"]]
    r = subprocess.run([str(device_venv.venv / "bin" / "edgekit"), "predict", str(bundle), *paths, "--json",
                        "--top", "1"], capture_output=True, text=True, env=device_venv.env)
    assert r.returncode == 0, r.stderr
    results, _ = _json_lines(r.stdout)
    assert [x["predictions"][0]["index"] for x in results] == edgekit.load(bundle).infer(g["pixels"]).argmax(1).tolist()
