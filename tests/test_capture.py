"""Capture: real video/folder decoding, and fake cameras (hardware) for picamera2 and drop-outs."""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_sdk.capture import Capture, ImageFolderSource, OpenCVSource, open_source
from edge_sdk.capture.base import redact_url
from edge_sdk.capture.picamera2_source import Picamera2Source, to_bgr
from edge_sdk.errors import InputError
from edge_sdk.store.records import LIMITS, normalise_record
from tests.runtime_fixtures import face_file

# A test image whose colour order is unambiguous: blue left half, red right half (BGR).
BLUE, RED = (255, 0, 0), (0, 0, 255)


def two_colour_bgr(w: int = 64, h: int = 48) -> np.ndarray:
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 2] = BLUE
    image[:, w // 2 :] = RED
    return image


# ---- fakes for hardware ---------------------------------------------------------------------------
class FakeCamera:
    """A USB camera behind cv2.VideoCapture's interface, driven by a script shared across reopenings.

    Script items: an image (delivered), ``"empty"`` (read succeeds with an empty array), ``"unplug"``
    (read fails and the next ``fail_opens`` opens fail, as when the cable is pulled), ``("freeze", s)``
    (the stream stays open but read blocks for ``s`` seconds, then fails: the driver's own read timeout),
    ``("slow", s, image)`` (read blocks for ``s`` seconds, then delivers ``image``). ``open_delay``: seconds
    every open takes (a camera or stream slow to open).
    """

    def __init__(self, script: list, fail_opens: int = 2) -> None:
        self.script = list(script)
        # Called once when the script runs out: tests stop the capture there (a live source never "ends").
        self.on_exhausted: Callable[[], object] = lambda: None
        self.fail_opens = fail_opens
        self.pending_failures = 0
        self.opens = 0
        self.released = 0
        self.open_delay = 0.0

    def opener(self, target: object) -> FakeCamera.Handle:
        self.opens += 1
        time.sleep(self.open_delay)
        ok = self.pending_failures == 0
        self.pending_failures = max(0, self.pending_failures - 1)
        return FakeCamera.Handle(self, ok)

    class Handle:
        def __init__(self, camera: FakeCamera, ok: bool) -> None:
            self.camera, self.ok = camera, ok

        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return self.ok

        def set(self, prop: int, value: float) -> bool:
            return True

        def get(self, prop: int) -> float:
            return 0.0

        def read(self) -> tuple[bool, np.ndarray | None]:
            camera = self.camera
            if not self.ok:
                return False, None
            if not camera.script:
                camera.on_exhausted()
                camera.on_exhausted = lambda: None
                time.sleep(0.01)
                return False, None
            item = camera.script.pop(0)
            if isinstance(item, tuple) and item[0] == "slow":
                time.sleep(item[1])
                return True, item[2]
            if isinstance(item, tuple) and item[0] == "freeze":
                time.sleep(item[1])
                return False, None
            if isinstance(item, str) and item == "unplug":
                camera.pending_failures = camera.fail_opens
                self.ok = False
                return False, None
            if isinstance(item, str) and item == "empty":
                return True, np.zeros((0, 0, 3), np.uint8)
            time.sleep(0.002)
            return True, item

        def release(self) -> None:
            self.camera.released += 1


def fake_picamera2_module(frames: int = 3, lores_format: str = "YUV420") -> types.SimpleNamespace:
    """A stand-in for the picamera2 package: configure/start/capture_array/stop/close."""
    bgr = two_colour_bgr(64, 48)
    arrays = {
        "YUV420": cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420),  # (72, 64) planar, as picamera2 returns it
        "RGB888": bgr.copy(),  # picamera2 "RGB888" is B,G,R in memory
        "BGR888": bgr[:, :, ::-1].copy(),
    }
    log: list[str] = []

    class Picamera2:
        def __init__(self, camera_num: int = 0) -> None:
            log.append("init")
            self.remaining = frames
            self.config: dict = {}

        def create_preview_configuration(self, main: dict, lores: dict, buffer_count: int = 4) -> dict:
            return {"main": main, "lores": lores}

        def configure(self, config: dict) -> None:
            self.config = config
            log.append("configure")

        def start(self) -> None:
            log.append("start")

        def capture_array(self, stream: str = "main") -> np.ndarray:
            if self.remaining <= 0:
                raise RuntimeError("camera timed out")
            if stream == "lores":
                self.remaining -= 1
            return arrays[self.config[stream]["format"]]

        def stop(self) -> None:
            log.append("stop")

        def close(self) -> None:
            log.append("close")

    return types.SimpleNamespace(Picamera2=Picamera2, log=log)


# ---- files and folders ------------------------------------------------------------------------------
def test_video_file_yields_every_frame_in_order_then_ends() -> None:
    source = OpenCVSource(str(face_file("single_face.mp4")))
    assert not source.live
    frames = list(Capture(source).frames())
    assert len(frames) == 72
    assert [f.index for f in frames] == list(range(72))
    assert all(frames[i].timestamp <= frames[i + 1].timestamp for i in range(71))
    assert frames[1].media_time == pytest.approx(1 / 30, abs=1e-3)
    assert frames[0].image.shape == (360, 640, 3) and frames[0].decode_ms > 0


def test_missing_file_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="no such video file"):
        open_source("/nonexistent/clip.mp4")


def test_image_folder_skips_and_counts_unreadable_files(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), two_colour_bgr())
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(tmp_path / "c.png"), two_colour_bgr())
    source = open_source(str(tmp_path))
    assert isinstance(source, ImageFolderSource)
    capture = Capture(source)
    frames = list(capture.frames())
    assert [f.index for f in frames] == [0, 2]
    assert capture.stats.bad_frames == 1 and capture.stats.frames_read == 2


# ---- live sources -------------------------------------------------------------------------------------
def test_camera_drop_out_is_reconnected_and_the_gap_recorded() -> None:
    image = two_colour_bgr()
    camera = FakeCamera([image] * 3 + ["unplug"] + [image] * 3, fail_opens=2)
    source = OpenCVSource("0", opener=camera.opener)
    assert source.live
    events = []
    capture = Capture(source, on_event=events.append, backoff_initial_s=0.01, backoff_max_s=0.04)
    camera.on_exhausted = capture.request_stop
    got = list(capture.frames())
    capture.stop()
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["source_lost", "source_restored"]
    restored = events[1]
    assert restored.detail["attempts"] == 3  # two failed opens while unplugged, then success
    assert restored.detail["gap_s"] >= 0.01 + 0.02  # backoff 0.01 then 0.02 (doubling) before success
    assert capture.stats.reconnects == 1 and capture.stats.gap_s > 0
    assert len(got) + capture.stats.dropped == 6  # a slow consumer may see fewer: never a backlog
    assert camera.released >= 2  # the lost handle and the final one


def test_empty_frame_from_a_camera_is_skipped_and_counted() -> None:
    image = two_colour_bgr()
    camera = FakeCamera([image, "empty", image, "empty", image])
    capture = Capture(OpenCVSource("/dev/video0", opener=camera.opener), backoff_initial_s=0.01)
    camera.on_exhausted = capture.request_stop
    got = [frame.index for frame in capture.frames()]
    capture.stop()
    assert set(got) <= {0, 2, 4} and len(got) + capture.stats.dropped == 3
    assert capture.stats.bad_frames == 2


def test_live_source_keeps_only_the_newest_frame() -> None:
    frames = [np.full((16, 16, 3), i, np.uint8) for i in range(40)]
    camera = FakeCamera(frames)
    capture = Capture(OpenCVSource("0", opener=camera.opener), backoff_initial_s=10)
    camera.on_exhausted = capture.request_stop
    seen = []
    for frame in capture.frames():
        seen.append(frame.index)
        time.sleep(0.03)  # a slow consumer: about 15 camera frames arrive per processed one
    capture.stop()
    assert capture.stats.dropped > 0 and len(seen) + capture.stats.dropped == 40
    assert seen == sorted(seen) and len(seen) < 20  # skipped ahead instead of queueing
    assert seen[-1] == 39  # the newest frame is the one kept


def test_stop_releases_a_camera_that_never_comes_back() -> None:
    camera = FakeCamera(["unplug"], fail_opens=10**6)
    capture = Capture(OpenCVSource("0", opener=camera.opener), backoff_initial_s=0.01, backoff_max_s=0.02)
    done = threading.Event()

    def consume() -> None:
        for _ in capture.frames():
            pass
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    time.sleep(0.1)
    capture.request_stop()
    assert done.wait(2.0)
    capture.stop()
    assert camera.opens >= 3  # kept retrying with backoff until stopped


def test_frozen_camera_is_lost_after_the_frame_timeout_not_the_driver_timeout() -> None:
    image = two_colour_bgr()
    _, capture, events, got = run_fake_camera(
        [image] * 3 + [("freeze", 1.5)] + [image] * 2, backoff_initial_s=0.01, frame_timeout_s=0.3
    )
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["source_lost", "source_restored"], (
        kinds
    )  # one loss: the driver's later failure is the same gap
    lost, restored = events[0], events[1]
    assert "no new frame for 0.3 s" in lost.detail["reason"]
    # the last frame before the freeze (a live source may drop one of the first three on a loaded machine)
    last_before = max(f.timestamp for f in got if f.timestamp <= lost.timestamp)
    assert 0.3 <= lost.timestamp - last_before < 1.0  # reported at the timeout, long before the 1.5 s read fails
    assert restored.detail["gap_s"] >= 1.4 and capture.stats.gap_s >= 1.4
    assert len(got) + capture.stats.dropped == 5


def test_a_camera_that_never_delivers_is_lost_once_without_a_timeout_storm() -> None:
    camera = FakeCamera([("freeze", 0.8)], fail_opens=0)
    events = []
    capture = Capture(OpenCVSource("0", opener=camera.opener), on_event=events.append, frame_timeout_s=0.2)
    camera.on_exhausted = capture.request_stop
    ticks = 0
    for item in capture.poll_frames(idle_s=0.05):
        assert item is None  # no frame ever: the caller is woken up to do its periodic work
        ticks += 1
        if ticks == 8:
            # >= 0.4 s waited (each tick waits idle_s): the loss at 0.2 s is reported; on a loaded machine the
            # 0.8 s freeze may already be over too, so only the first event is pinned here
            assert [e.kind for e in events][:1] == ["source_lost"]
    capture.stop()
    assert ticks >= 8 and [e.kind for e in events][:2] == ["source_lost", "source_restored"]
    timeouts = [e for e in events if "no new frame" in e.detail.get("reason", "")]
    assert len(timeouts) == 1  # 0.8 s frozen, 0.2 s timeout: one loss, not one per timeout period


def run_fake_camera(
    script: list, url: str = "0", fail_opens: int = 0, **settings: float
) -> tuple[OpenCVSource, Capture, list, list]:
    """Capture from a FakeCamera playing ``script`` until it ends: (source, capture, events, frames)."""
    camera = FakeCamera(script, fail_opens=fail_opens)
    source = OpenCVSource(url, opener=camera.opener)
    events: list = []
    capture = Capture(source, on_event=events.append, **settings)
    camera.on_exhausted = capture.request_stop
    frames = list(capture.frames())
    capture.stop()
    return source, capture, events, frames


def stream_with_a_gap(url: str) -> tuple[OpenCVSource, list]:
    """A stream at ``url``: one failed open, a frame, an unplug, a frame; its source and events."""
    source, _, events, _ = run_fake_camera(
        [two_colour_bgr(), "unplug", two_colour_bgr()], url, fail_opens=1, backoff_initial_s=0.01
    )
    return source, events


def test_url_credentials_never_reach_names_events_or_errors() -> None:
    assert redact_url("rtsp://admin:p@ss:w0rd@10.0.0.7:554/h264?x=1") == "rtsp://***@10.0.0.7:554/h264?x=1"
    assert (
        redact_url("camera http://u:v@host/a and rtsps://t0ken@h/b") == "camera http://***@host/a and rtsps://***@h/b"
    )
    assert redact_url("rtsp://10.0.0.7/stream") == "rtsp://10.0.0.7/stream"
    assert redact_url("/dev/video0") == "/dev/video0"
    source, events = stream_with_a_gap("rtsp://admin:s3cret@10.0.0.7/live")
    assert source.name == "rtsp://***@10.0.0.7/live" and "s3cret" in str(source.target)  # it still connects
    assert events and "s3cret" not in repr(events) and "***@10.0.0.7" in repr(events)
    with pytest.raises(InputError) as err:
        OpenCVSource("ftp://admin:s3cret@host/clip.mp4")  # not a stream scheme: treated as a missing file
    assert "s3cret" not in str(err.value)


def test_a_reopened_camera_slow_to_its_first_frame_is_not_frozen_and_the_gap_is_right() -> None:
    """The frozen clock restarts when the source reopens: not at the last frame before the loss."""
    image = two_colour_bgr()
    _, capture, events, got = run_fake_camera(
        [image] * 2 + ["unplug", ("slow", 0.6, image), image], backoff_initial_s=1.0, frame_timeout_s=1.0
    )
    assert [e.kind for e in events][:2] == ["source_lost", "source_restored"]  # (the script's end is a loss too)
    assert "frozen" not in repr(events), events  # no spurious "frozen" loss after the reopen
    assert 1.0 <= capture.stats.gap_s < 1.5  # the 1 s backoff, not that plus the time to the first new frame
    assert len(got) + capture.stats.dropped == 4


def test_a_camera_slow_to_open_is_not_reported_frozen_at_start() -> None:
    camera = FakeCamera([two_colour_bgr()] * 3, fail_opens=0)
    camera.open_delay = 0.6  # longer than the frame timeout: the frozen clock starts once it is open
    events = []
    capture = Capture(OpenCVSource("0", opener=camera.opener), on_event=events.append, frame_timeout_s=0.3)
    camera.on_exhausted = capture.request_stop
    got = list(capture.frames())
    capture.stop()
    frozen = [e for e in events if "frozen" in e.detail.get("reason", "")]
    assert frozen == [] and capture.stats.reconnects == 0  # (only the script's end may be a loss)
    assert len(got) + capture.stats.dropped == 3


def test_a_long_stream_url_still_fits_every_event_in_the_log() -> None:
    url = "rtsp://admin:s3cret@10.0.0.7:554/" + "x" * 400
    camera = FakeCamera([two_colour_bgr(), "unplug", two_colour_bgr()], fail_opens=1)
    source = OpenCVSource(url, opener=camera.opener)
    events = []
    capture = Capture(source, on_event=events.append, backoff_initial_s=0.01)
    camera.on_exhausted = capture.request_stop
    list(capture.frames())
    capture.stop()
    assert len(source.name) <= 200 and source.name.startswith("rtsp://***@10.0.0.7") and source.name.endswith("\u2026")
    assert source.target == url  # it still connects to the whole address
    assert [e.kind for e in events][:2] == ["source_lost", "source_restored"]
    for event in [*events, type(events[0])("run_started", 0.0, {"source": source.name})]:
        record = event.to_record()
        assert all(len(v) <= LIMITS.max_string for v in record.values() if isinstance(v, str)), record
        normalise_record(record)  # what the log checks: accepted
    assert "s3cret" not in repr(events)


def test_credentials_in_the_query_string_are_redacted() -> None:
    assert redact_url("rtsp://10.0.0.7/live?user=admin&pwd=secret") == "rtsp://10.0.0.7/live?user=***&pwd=***"
    assert (
        redact_url("http://cam/video.cgi?resolution=640&password=p4ss&token=abc;key=k3y#auth=x1")
        == "http://cam/video.cgi?resolution=640&password=***&token=***;key=***#auth=***"
    )
    assert redact_url("http://cam/a?channel=1&subtype=0") == "http://cam/a?channel=1&subtype=0"
    source, events = stream_with_a_gap("rtsp://10.0.0.7/live?user=admin&password=s3cret")
    assert source.name == "rtsp://10.0.0.7/live?user=***&password=***"
    assert events and "s3cret" not in repr(events) and "admin" not in repr(events)


# ---- picamera2 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["YUV420", "RGB888", "BGR888"])
def test_picamera2_colour_order_is_bgr(fmt: str) -> None:
    module = fake_picamera2_module(frames=2)
    source = Picamera2Source(lores_size=(64, 48), lores_format=fmt, module=module)
    capture = Capture(source, backoff_initial_s=10)
    frame = next(iter(capture.frames()))
    capture.stop()
    left, right = frame.image[24, 8], frame.image[24, 56]
    assert frame.image.shape == (48, 64, 3)
    assert np.abs(left.astype(int) - BLUE).max() < 12, f"{fmt}: left half should be blue in BGR, got {left}"
    assert np.abs(right.astype(int) - RED).max() < 12, f"{fmt}: right half should be red in BGR, got {right}"


def test_picamera2_lifecycle_and_main_stream_for_display() -> None:
    module = fake_picamera2_module(frames=2)
    source = Picamera2Source(lores_size=(64, 48), main_size=(64, 48), module=module)
    events = []
    capture = Capture(source, on_event=events.append, backoff_initial_s=10)
    frame = next(iter(capture.frames()))
    assert frame.display is not None and frame.display.shape == (48, 64, 3)
    capture.stop()
    assert module.log[:3] == ["init", "configure", "start"]
    assert module.log[-2:] == ["stop", "close"]


def test_picamera2_failure_is_a_gap_not_a_crash() -> None:
    module = fake_picamera2_module(frames=2)  # every new Picamera2() delivers 2 frames, then times out
    events = []
    capture = Capture(
        Picamera2Source(lores_size=(64, 48), module=module),
        on_event=events.append,
        backoff_initial_s=0.01,
    )
    for count, _ in enumerate(capture.frames(), 1):
        if count == 4:
            break
    capture.stop()
    assert [e.kind for e in events][:2] == ["source_lost", "source_restored"]
    assert module.log.count("init") >= 2


def test_picamera2_absent_package_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="python3-picamera2"):
        Picamera2Source()._picamera2()


def test_to_bgr_rejects_empty_arrays() -> None:
    assert to_bgr(np.zeros((0, 0), np.uint8), "YUV420", 64) is None
    assert to_bgr(None, "RGB888", 64) is None
