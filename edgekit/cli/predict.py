"""`edgekit predict`: classify images, video, streams or a camera with a bundle (device side)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from edgekit.cli import render_predict
from edgekit.cli.app import main
from edgekit.errors import DeviceError, ImageError, UsageError


@main.command()
@click.argument("bundle", type=click.Path(file_okay=False))
@click.argument("inputs", nargs=-1)
@click.option("--camera", default=None, is_flag=False, flag_value="0", metavar="[INDEX]",
              help="Classify a live camera (default index 0): picamera2 on a Raspberry Pi, else OpenCV.")
@click.option("--top", default=5, show_default=True, help="Classes shown per image or frame.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per image or frame, then one with the summary.")
@click.option("--every", default=1, show_default=True, help="Video and camera: classify every N-th frame.")
@click.option("--max-frames", type=int, default=None, help="Video and camera: stop after this many frames.")
@click.option("--precision", type=click.Choice(["int8", "fp32"]), default="int8", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Runtime threads [default: all cores].")
@click.option("--runtime", default="auto", show_default=True, help="auto (the bundle's), openvino, onnxruntime or litert.")
def predict(bundle, inputs, camera, top, as_json, every, max_frames, precision, threads, runtime) -> None:
    """Classify INPUTS with BUNDLE: image files, directories of images, video files or stream URLs (rtsp://,
    http://, ...), or --camera. Images print their top classes; video and camera show frames/s as they go and end
    with a summary of the capture, preprocessing and inference latencies."""
    from edgekit.core.classes import ClassIndex
    from edgekit.device import frames, predict as run
    from edgekit.device.classifier import load
    from edgekit.device.imagesets import IMAGE_SUFFIXES

    if not inputs and camera is None:
        raise UsageError("give images, directories, a video or stream URL, or --camera [INDEX]")
    if top < 1 or every < 1 or (max_frames is not None and max_frames < 1):
        raise UsageError("--top, --every and --max-frames must be at least 1")
    try:
        cam = int(camera) if camera is not None else None
    except ValueError:
        raise UsageError(f"--camera {camera!r}: give a camera index such as 0") from None
    plan = []  # ("images", [paths]) | ("video", spec) | ("camera", index), in the order given
    for spec in inputs:
        p = Path(spec)
        if frames.is_stream(spec):
            plan.append(("video", spec))
        elif not p.exists():
            raise UsageError(f"{spec}: no such file or directory")
        elif run.is_image(p):
            if plan and plan[-1][0] == "images":
                plan[-1][1].append(p)
            else:
                plan.append(("images", [p]))
        elif p.suffix.lower() in frames.VIDEO_SUFFIXES:
            plan.append(("video", spec))
        else:
            raise UsageError(f"{spec}: neither an image ({_suffixes(IMAGE_SUFFIXES)}) nor a video "
                             f"({_suffixes(frames.VIDEO_SUFFIXES)})")
    if cam is not None:
        plan.append(("camera", cam))

    model = load(bundle, precision, threads, runtime)
    out = _Output(as_json)
    for kind, what in plan:
        if kind == "images":
            paths, labels = run.image_paths(what, ClassIndex.from_manifest(model.manifest))
            named = str(what[0]) if len(what) == 1 else f"{len(what)} inputs ({what[0]} ... {what[-1]})"
            if not paths:
                raise ImageError(f"no images ({_suffixes(IMAGE_SUFFIXES)}) under {named}")
            summary = run.Summary("image", named, class_names=model.class_names)
            for result in run.images(model, paths, top, summary, labels):
                out.image(result)
            out.summary(summary)
            if summary.failed:
                raise ImageError(f"{len(summary.failed)} of {summary.read} images could not be read (first: "
                                 f"{summary.failed[0]})")
        else:
            source = frames.camera(what) if kind == "camera" else frames.video(what)
            summary = run.Summary("frame", source.name)
            try:
                for result in run.frames(model, source, top, every, summary, max_frames):
                    out.frame(summary, result)
            except DeviceError:
                out.summary(summary)
                raise
            except KeyboardInterrupt:  # Ctrl-C ends a camera run: the summary is what it is for
                summary.stopped = "interrupted"
            out.summary(summary)


def _suffixes(suffixes) -> str:
    return ", ".join(sorted(x[1:] for x in suffixes))


class _Output:
    """Results to stdout (a table or JSON lines); the live line and summaries to stderr."""

    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.tty = sys.stderr.isatty()
        self.stdout_tty = sys.stdout.isatty()
        self._last_live = 0.0

    def image(self, result) -> None:
        click.echo(json.dumps(result.to_dict()) if self.as_json else render_predict.predictions_table(result))

    def frame(self, summary, result) -> None:
        if self.as_json:
            click.echo(json.dumps(result.to_dict()))
        elif not self.stdout_tty:  # a log or a pipe: one line per classified frame
            click.echo(render_predict.frame_line(result))
        now = time.monotonic()
        if self.tty and now - self._last_live >= 0.25:
            self._last_live = now
            click.echo("\r\033[K" + render_predict.live_line(summary, result), err=True, nl=False)

    def summary(self, summary) -> None:
        if self.tty and summary.kind == "frame":
            click.echo("\r\033[K", err=True, nl=False)
        s = summary.to_dict()
        if self.as_json:
            click.echo(json.dumps({"summary": s}))
        click.echo(render_predict.predict_summary(s), err=True)
