"""Frame sources for `edgekit predict`: video files, streams and cameras behind one small interface.

OpenCV (`opencv-python-headless`, the `device-video` extra) reads files, RTSP/HTTP streams and USB cameras; on a
Raspberry Pi with `picamera2` importable, `--camera` uses the Pi's camera through it. Each source hands out RGB
HxWx3 uint8 frames.
"""
from __future__ import annotations

import os
import warnings
from typing import Protocol

import numpy as np

from edgekit.errors import RuntimeMissing, StreamError

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".h264", ".mjpg",
                  ".mjpeg", ".gif"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
TIMEOUT_MS = 10_000  # an unanswered stream or a silent camera fails after this, instead of hanging


class FrameSource(Protocol):
    name: str

    def read(self) -> np.ndarray | None:
        """The next RGB frame; None at the end of a file. A live source that stops raises StreamError."""

    def close(self) -> None: ...


def is_stream(spec: str) -> bool:
    return spec.lower().startswith(STREAM_SCHEMES)


def _cv2():
    # OpenCV's and FFmpeg's own messages would double our one error line
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    try:
        import cv2
    except ImportError:
        raise RuntimeMissing("video, streams and cameras need OpenCV: pip install opencv-python-headless (edgekit's "
                             "device-video extra)") from None
    return cv2


class OpenCVSource:
    def __init__(self, spec: str | int, name: str, live: bool, remote: bool = False):
        """live: any end is a stop (cameras, streams); remote: a file read over the network, whose end before its
        frame count is a stop."""
        cv2 = self._cv2 = _cv2()
        self.name, self.live, self.remote, self.frames = name, live, remote, 0
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, TIMEOUT_MS]
        self.cap = cv2.VideoCapture(spec, cv2.CAP_ANY, params)
        if not self.cap.isOpened():
            self.cap.release()
            what = f"no camera at index {spec}" if isinstance(spec, int) else f"cannot open {name}"
            raise StreamError(f"{what} (OpenCV {cv2.__version__} could not open it): check the "
                              f"{'device (ls /dev/video*)' if isinstance(spec, int) else 'path or URL'}")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else None
        self.expected = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)  # 0: unknown

    def read(self) -> np.ndarray | None:
        ok, frame = self.cap.read()
        if not ok:
            if self.live or (self.remote and self.frames < self.expected):
                of = f" of {self.expected}" if self.expected and not self.live else ""
                raise StreamError(f"{self.name} stopped sending frames after {self.frames}{of}")
            if self.frames == 0:
                raise StreamError(f"{self.name} has no frame OpenCV can decode")
            if self.expected and self.frames < self.expected:
                warnings.warn(f"{self.name} ended after {self.frames} of the {self.expected} frames its header "
                              "announces: the file may be truncated")
                self.expected = 0
            return None
        self.frames += 1
        return self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self.cap.release()


class Picamera2Source:
    """The Raspberry Pi camera through picamera2 (libcamera). Not exercised by the test suite: no camera there."""

    def __init__(self, index: int, size: tuple[int, int] = (640, 480)):
        from picamera2 import Picamera2

        self.name, self.fps = f"Pi camera {index}", None
        self.cam = None
        try:
            self.cam = Picamera2(index)
            # libcamera's "RGB888" is B, G, R in memory (the picamera2 manual's image formats): flipped in read()
            self.cam.configure(self.cam.create_video_configuration(main={"format": "RGB888", "size": size}))
            self.cam.start()
        except (IndexError, RuntimeError) as e:
            if self.cam is not None:
                self.cam.close()
            raise StreamError(f"no Pi camera at index {index} ({e}): check `rpicam-hello --list-cameras`") from None

    def read(self) -> np.ndarray | None:
        try:
            return np.ascontiguousarray(self.cam.capture_array("main")[..., 2::-1])
        except RuntimeError as e:
            raise StreamError(f"{self.name} stopped: {e}") from None

    def close(self) -> None:
        self.cam.close()


def camera(index: int) -> FrameSource:
    """The Pi camera through picamera2 where it is importable and has a camera at `index`, else OpenCV's (a USB
    camera on a Pi too)."""
    try:
        import picamera2  # noqa: F401  (a Raspberry Pi OS with the camera stack)
    except ImportError:
        return OpenCVSource(index, f"camera {index}", live=True)
    try:
        return Picamera2Source(index)
    except StreamError as pi_error:
        try:
            return OpenCVSource(index, f"camera {index}", live=True)
        except StreamError:
            raise pi_error from None


def video(spec: str) -> FrameSource:
    """A video file, a video file at a URL (ending before its frame count is a stop), or a stream URL (any end is a
    stop)."""
    if not is_stream(spec):
        return OpenCVSource(spec, spec, live=False)
    path = spec.split("?", 1)[0].lower()
    if any(path.endswith(suffix) for suffix in VIDEO_SUFFIXES):
        return OpenCVSource(spec, spec, live=False, remote=True)
    return OpenCVSource(spec, spec, live=True)
