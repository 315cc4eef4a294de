"""The pipeline on real video and images: results, sinks, no-face, no-AU models, config, watchdog."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_sdk import build_pipeline
from edge_sdk.capture import OpenCVSource
from edge_sdk.errors import InputError
from edge_sdk.model.face_model import FaceModel
from edge_sdk.pipeline import (
    PAIN_UNAVAILABLE,
    STAGES,
    FrameResult,
    JsonLinesSink,
    PainState,
    build_config,
    load_toml,
)
from tests.runtime_fixtures import face_file, pain_model, tiny_model, yunet_path
from tests.test_capture import FakeCamera, two_colour_bgr


def config(source: Path | str, **overrides: object):
    values = {"source": str(source), "detector.model": str(yunet_path()), "status_every_s": 0, "log.format": "jsonl"}
    values.update(overrides)
    return build_config({}, values)


@pytest.fixture(autouse=True)
def pipeline_log() -> Iterator[io.StringIO]:
    """What the library logs during one test (``edge_sdk`` loggers, INFO and up), as text: the lines
    ``edge-sdk run`` shows on stderr."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("edge_sdk")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    _LOGS.append(stream)
    try:
        yield stream
    finally:
        _LOGS.remove(stream)
        logger.removeHandler(handler)
        logger.setLevel(level)


_LOGS: list[io.StringIO] = []  # the running test's pipeline_log


def run(cfg, sinks=(), model=None, source=None):
    results: list[FrameResult] = []
    logged = _LOGS[-1].tell()
    pipeline, capture = build_pipeline(cfg, sinks=sinks, on_result=results.append, model=model, source=source)
    summary = pipeline.run(capture)
    return summary, results, _LOGS[-1].getvalue()[logged:]


def read_jsonl(folder: Path) -> list[dict]:
    (path,) = folder.glob("*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_video_run_processes_every_frame_and_logs_json_records(tmp_path: Path) -> None:
    cfg = config(face_file("single_face.mp4"), model=pain_model(), log_dir=str(tmp_path))
    summary, results, log = run(cfg)
    assert summary.frames == len(results) == 72
    assert summary.detection_rate >= 0.95
    assert set(summary.stage_ms) == set(STAGES) and summary.stage_ms["detect"] > 0
    assert "face detector: yunet" in log
    first = next(r for r in results if r.faces)
    face = first.faces[0]
    assert face.crop == "aligned" and face.pspi is not None and 0 <= face.pspi <= 16
    assert set(face.expression) >= {"neutral", "happy"} and set(face.valence_arousal) == {"valence", "arousal"}
    assert face.au_intensities is not None and face.au_probabilities is not None
    assert abs(sum(face.expression.values()) - 1.0) < 1e-2
    records = read_jsonl(tmp_path)
    frames = [r for r in records if r["kind"] == "frame"]
    events = [r["event"] for r in records if r["kind"] == "event"]
    assert len(frames) == 72 and events[0] == "run_started" and events[-1] == "run_stopped"
    assert set(frames[10]["latency_ms"]) == set(STAGES) - {"sink"}  # a record cannot hold its own write time
    assert set(results[10].latency_ms) == set(STAGES)
    assert frames[10]["faces"][0]["box"] and frames[10]["pspi"] is not None
    # records are numbers and labels only: nothing array-like (no pixels) anywhere
    assert "[[" not in json.dumps(frames[10]["faces"][0].get("expression"))


def test_no_face_video_gives_the_no_face_state_and_no_pain_values(tmp_path: Path) -> None:
    cfg = config(face_file("no_face.mp4"), model=pain_model(), log_dir=str(tmp_path), max_frames=60)
    summary, results, _ = run(cfg)
    assert summary.frames == 60 and summary.frames_with_face == 0
    assert all(r.pain.pspi is None and r.pain.score is None for r in results)
    assert results[-1].pain.state is PainState.NO_FACE
    events = [r for r in read_jsonl(tmp_path) if r["kind"] == "event"]
    assert [e["event"] for e in events if e["event"] == "face_lost"] == ["face_lost"]


def test_model_without_au_heads_has_no_pspi_and_says_so_once(tmp_path: Path) -> None:
    cfg = config(face_file("single_face.mp4"), model=str(tiny_model(False)), max_frames=10)
    summary, results, log = run(cfg)
    assert log.count(PAIN_UNAVAILABLE) == 1
    assert all(r.pain.state is PainState.UNAVAILABLE and r.pain.pspi is None for r in results)
    assert all(f.pspi is None and f.au_intensities is None for r in results for f in r.faces)
    assert results[0].faces[0].expression is not None


def test_all_faces_policy_on_multi_face_image_folder(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "multi_face.jpg").symlink_to(face_file("multi_face.jpg"))
    (folder / "single_face.jpg").symlink_to(face_file("single_face.jpg"))
    _, results, _ = run(config(folder, model=pain_model(), faces="all", **{"detector.scale": 1.0}))
    assert [len(r.faces) for r in results] == [5, 1]
    areas = [f.face.area for f in results[0].faces]
    assert areas == sorted(areas, reverse=True)  # largest first: faces[0] drives pain
    _, results, _ = run(config(folder, model=pain_model(), **{"detector.scale": 1.0}))
    assert [len(r.faces) for r in results] == [1, 1]


def test_camera_gap_is_an_event_and_the_run_continues(tmp_path: Path, pipeline_log: io.StringIO) -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    camera = FakeCamera([image] * 3 + ["unplug"] + [image] * 3 + ["empty"] + [image] * 2, fail_opens=1)
    cfg = config("0", model=pain_model(), log_dir=str(tmp_path), **{"capture.reconnect_initial_s": 0.01})
    pipeline, capture = build_pipeline(cfg, source=OpenCVSource("0", opener=camera.opener))
    camera.on_exhausted = pipeline.stop
    summary = pipeline.run(capture)
    log = pipeline_log.getvalue()
    assert summary.capture["reconnects"] == 1 and summary.capture["bad_frames"] == 1
    assert summary.capture["frames_read"] == 8 and 1 <= summary.frames <= 8  # live: older frames may be dropped
    assert "source lost" in log and "source restored" in log
    events = [r["event"] for r in read_jsonl(tmp_path) if r["kind"] == "event"]
    assert events.index("source_lost") < events.index("source_restored")


def test_watchdog_reports_a_stuck_backend(tmp_path: Path) -> None:
    model = FaceModel(pain_model())
    real_run = model.backend.run
    calls = {"n": 0}

    def sometimes_stuck(batch: np.ndarray):
        calls["n"] += 1
        if calls["n"] == 2:
            time.sleep(0.6)  # the hardware/runtime hangs once
        return real_run(batch)

    model.backend.run = sometimes_stuck  # type: ignore[method-assign]
    cfg = config(face_file("single_face.mp4"), log_dir=str(tmp_path), max_frames=4, watchdog_s=0.2)
    summary, results, log = run(cfg, model=model)
    assert "watchdog" in log
    events = [r for r in read_jsonl(tmp_path) if r["kind"] == "event"]
    kinds = [e["event"] for e in events]
    assert kinds.index("pipeline_stalled") < kinds.index("pipeline_recovered")
    # a stall is a fault: the state while stalled, a fault of the run (exit 1), and it recovers
    stuck = results[1].pain
    assert stuck.state is PainState.FAULT and stuck.fault is not None
    assert stuck.fault.startswith("watchdog: pipeline stalled: one frame in 'analyze' for ")
    assert summary.faults["watchdog"].startswith("pipeline stalled") and summary.final_state != "fault"
    assert results[-1].pain.state is not PainState.FAULT and "-> fault (watchdog: pipeline stalled" in log


def test_json_lines_sink_matches_the_store_interface(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path / "log.jsonl")
    sink.write({"event": "x", "value": 1}, kind="event", timestamp=1.5)
    sink.write({"frame": 0, "timestamp": 2.0})
    sink.flush()
    sink.close()
    sink.close()
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines == [
        {"kind": "event", "timestamp": 1.5, "event": "x", "value": 1},
        {"kind": "frame", "timestamp": 2.0, "frame": 0},
    ]


# ---- configuration -----------------------------------------------------------------------------------
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge-sdk.toml"
    path.write_text(text)
    return path


def test_config_file_values_and_flag_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'model = "demo"\nmax_fps = 10\n[pain]\nthreshold = 5\nwindow_s = 3.0\n[detector]\ninterval = 2\n'
    )
    cfg = build_config(load_toml(path), {"max_fps": 15.0, "faces": None})
    assert cfg.max_fps == 15.0 and cfg.faces == "largest"
    assert cfg.pain.threshold == 5 and cfg.pain.window_s == 3.0 and cfg.detector.interval == 2


def test_run_flags_override_only_the_keys_they_name(tmp_path: Path) -> None:
    import argparse

    from edge_sdk.cli.run import add_arguments, config_from_args

    path = write(tmp_path, "preview = true\nmax_fps = 3\n[detector]\nscale = 0.7\ninterval = 2\n[log]\nquota_mb = 1.5")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--config", str(path), "--display-none", "--detect-scale", "0.2"]))
    assert (cfg.preview, cfg.max_fps, cfg.detector.scale, cfg.detector.interval) == (False, 3, 0.2, 2)
    assert cfg.log.quota_bytes == 1_572_864  # the file's quota_mb is MiB; LogSettings holds bytes
    assert build_config().log.quota_bytes == 512 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_fsp = 10\n", "unknown key 'max_fsp'"),
        ("[pain]\ntreshold = 4\n", "unknown key 'pain.treshold'"),
        ("[alerts]\nx = 1\n", "unknown section [alerts]"),
        ("max_fps = -3\n", "key 'max_fps' = -3: must be > 0"),
        ('faces = "everyone"\n', "key 'faces'"),
        ('[pain]\nthreshold = "high"\n', "key 'pain.threshold'"),
        ("[detector]\nscale = 2.0\n", "key 'detector.scale'"),
        ("preview = 1\n", "key 'preview'"),
        ("max_fps = \n", "not valid TOML"),
        ("[pain]\nframe_timeout_s = inf\n", "key 'pain.frame_timeout_s' = inf"),
        ("[pain]\nframe_timeout_s = 0\n", "key 'pain.frame_timeout_s' = 0"),
        ("[pain]\nfault_after_s = 1e9\n", "key 'pain.fault_after_s'"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_toml(write(tmp_path, text))


def test_inconsistent_thresholds_are_rejected() -> None:
    with pytest.raises(InputError, match="clear_threshold"):
        build_config({"pain.threshold": 2.0, "pain.clear_threshold": 3.0})


def test_picture_is_never_in_a_record() -> None:
    cfg = config(face_file("single_face.mp4"), model=pain_model(), max_frames=1)
    _, results, _ = run(cfg)
    record = results[0].to_record()
    assert json.loads(json.dumps(record)) == record  # plain JSON types only
    assert two_colour_bgr().size > 0  # (the fake camera helper stays importable)


def test_preview_without_gui_support_says_so_clearly() -> None:
    import cv2

    from edge_sdk.pipeline.preview import PreviewWindow, draw_overlay

    cfg = config(face_file("single_face.mp4"), model=pain_model(), max_frames=1)
    _, results, _ = run(cfg)
    image = np.zeros((360, 640, 3), np.uint8)
    drawn = draw_overlay(image, results[0])
    assert drawn.shape == image.shape and drawn.any() and not image.any()  # drawn on a copy, never saved
    try:
        window = PreviewWindow()
    except InputError as exc:
        assert "opencv-python-headless" in str(exc)
    else:  # an OpenCV with a GUI backend (bench machine)
        window.close()
        assert cv2.getBuildInformation()


# ---- never "clear" without evidence; every fault is loud ------------------------------------------------
def test_a_video_that_starts_without_a_face_is_unknown_then_no_face_never_clear(tmp_path: Path) -> None:
    cfg = config(face_file("no_face.mp4"), model=pain_model(), log_dir=str(tmp_path), max_frames=90)
    summary, results, log = run(cfg)
    shown = [r.pain.state.value for r in results]
    assert "clear" not in shown and shown[0] == "unknown" and shown[-1] == "no_face"
    assert shown == sorted(shown, key=["unknown", "no_face"].index)  # unknown, then no_face, nothing else
    assert summary.final_state == "no_face"
    (lost,) = [r for r in read_jsonl(tmp_path) if r.get("event") == "face_lost"]
    assert lost["from"] == "unknown" and lost["last_face_at"] is None
    assert "state: unknown -> no_face" in log


def test_a_damaged_model_is_a_fault_never_clear_and_the_log_holds_no_pain_score(tmp_path: Path) -> None:
    from tests.test_model_faults import flipped_demo

    damaged = flipped_demo(tmp_path)
    cfg = config(face_file("WolfgangLanger_Pexels.mp4"), model=str(damaged), log_dir=str(tmp_path), max_frames=60)
    summary, results, log = run(cfg)
    shown = [r.pain.state.value for r in results]
    assert "clear" not in shown and "alert" not in shown and shown[-1] == "fault"
    assert all(r.pain.pspi is None and r.pain.score is None for r in results)
    assert summary.final_state == "fault" and "non-finite" in summary.faults["model"]
    records = read_jsonl(tmp_path)
    faults = [r for r in records if r.get("event") == "model_fault"]
    assert len(faults) == 1 and "non-finite" in faults[0]["problem"]  # once per episode
    frames = [r for r in records if r["kind"] == "frame"]
    assert all(f["pain_score"] is None and f["pspi"] is None for f in frames)
    scored = [f for f in frames if f["faces"]]
    assert scored and all(face["fault"].startswith("bad model output") for f in scored for face in f["faces"])
    assert scored[-1]["state"] == "fault" and scored[-1]["fault"].startswith("model: ")
    assert "model: FAULT" in log and "state: unknown -> fault" in log
    stopped = records[-1]
    assert stopped["event"] == "run_stopped" and stopped["final_state"] == "fault" and stopped["faults"]["model"]


def test_one_nan_frame_then_sustained_pain_still_alerts() -> None:
    model = FaceModel(pain_model())
    real_run = model.backend.run
    calls = {"n": 0}

    def one_nan_then_pain(batch: np.ndarray):
        calls["n"] += 1
        outputs = real_run(batch)
        outputs["au_intensity"] = np.full_like(outputs["au_intensity"], np.nan if calls["n"] == 1 else 5.0)
        return outputs

    model.backend.run = one_nan_then_pain  # type: ignore[method-assign]
    cfg = config(face_file("single_face.mp4"), **{"pain.raise_after_s": 1.0, "pain.smoothing": "ema"})
    summary, results, log = run(cfg, model=model)
    events = [e.kind for r in results for e in r.pain.events]
    assert events[:3] == ["model_fault", "model_recovered", "alert_raised"]
    assert summary.alerts_raised == 1 and results[-1].pain.state is PainState.ALERT
    assert results[-1].pain.score == pytest.approx(16.0)  # the smoothing was never poisoned by the NaN
    assert summary.faults["model"].startswith("bad model output: au_intensity")  # still a fault of the run


def face_frame() -> np.ndarray:
    import cv2

    return cv2.imread(str(face_file("single_face.jpg")))


def test_a_frozen_camera_becomes_no_signal_within_the_frame_timeout(tmp_path: Path, pipeline_log: io.StringIO) -> None:
    camera = FakeCamera([face_frame()] * 4 + [("freeze", 2.5)], fail_opens=0)
    cfg = config("0", model=pain_model(), log_dir=str(tmp_path), **{"pain.frame_timeout_s": 0.5})
    results: list[FrameResult] = []
    pipeline, capture = build_pipeline(cfg, on_result=results.append, source=OpenCVSource("0", opener=camera.opener))
    camera.on_exhausted = pipeline.stop
    summary = pipeline.run(capture)
    assert results and results[-1].pain.state is PainState.CLEAR  # the face was scored before the freeze
    assert summary.final_state == "no_signal"
    events = [r for r in read_jsonl(tmp_path) if r["kind"] == "event"]
    lost = next(e for e in events if e["event"] == "source_lost")
    assert "no new frame for 0.5 s" in lost["reason"]
    assert 0.5 <= lost["timestamp"] - results[-1].timestamp < 1.5  # not the driver's 2.5 s (real cameras: 30 s)
    assert "state: clear -> no_signal" in pipeline_log.getvalue()


def test_no_camera_at_all_ends_in_no_signal(tmp_path: Path) -> None:
    import threading

    camera = FakeCamera([], fail_opens=0)
    camera.pending_failures = 10**6  # nothing ever opens: no camera plugged in
    cfg = config("0", model=pain_model(), log_dir=str(tmp_path), **{"capture.reconnect_initial_s": 0.05})
    pipeline, capture = build_pipeline(cfg, source=OpenCVSource("0", opener=camera.opener))
    threading.Timer(1.0, pipeline.stop).start()
    summary = pipeline.run(capture)
    assert summary.frames == 0 and summary.final_state == "no_signal"
    kinds = [r.get("event") for r in read_jsonl(tmp_path)]
    assert kinds[:2] == ["run_started", "source_lost"] and kinds[-1] == "run_stopped"


class FlakySink:
    """A result sink whose own health goes bad after ``bad_after`` records and good again ``bad_for_s`` later
    (the encrypted log's ``health()`` interface: never blocks)."""

    def __init__(self, bad_after: int, bad_for_s: float) -> None:
        self.records: list[tuple[str, dict]] = []
        self.bad_after, self.bad_for_s = bad_after, bad_for_s
        self.bad_since: float | None = None

    def write(self, record, kind="frame", timestamp=None) -> None:
        self.records.append((kind, dict(record)))
        if len(self.records) == self.bad_after:
            self.bad_since = time.monotonic()

    def health(self):
        from edge_sdk.pipeline.sinks import SinkHealth

        bad = self.bad_since is not None and time.monotonic() - self.bad_since < self.bad_for_s
        return SinkHealth(
            ok=not bad, problem="disk full: 7 rows held in memory" if bad else "", dropped=3 if bad else 0
        )

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_log_writer_fault_is_an_event_a_state_and_a_fault_of_the_run() -> None:
    sink = FlakySink(bad_after=8, bad_for_s=2.0)  # health is polled every HEALTH_EVERY_S = 1 s
    cfg = config(face_file("single_face.mp4"), model=pain_model(), max_fps=20.0)  # 72 frames: >= 3.6 s
    summary, results, log = run(cfg, sinks=[sink])
    events = [r for kind, r in sink.records if kind == "event"]
    kinds = [e["event"] for e in events]
    assert kinds.count("log_fault") == 1 and kinds.index("log_fault") < kinds.index("log_recovered")
    fault = next(e for e in events if e["event"] == "log_fault")
    assert fault["problem"] == "FlakySink: disk full: 7 rows held in memory" and fault["dropped"] == 3
    shown = [r.pain.state.value for r in results]
    assert "fault" in shown and "clear" in shown  # fault while it lasted, clear before and after
    assert summary.faults["log"].startswith("FlakySink: disk full") and summary.final_state == "clear"
    assert "log: FAULT: FlakySink: disk full" in log and "log: recovered" in log


class BrokenSink:
    """A sink whose every write fails, as a JSON-lines file on a full disk does."""

    def write(self, record, kind="frame", timestamp=None) -> None:
        raise OSError(28, "No space left on device")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_sink_that_raises_never_stops_the_monitor_and_every_lost_row_is_counted() -> None:
    cfg = config(face_file("single_face.mp4"), model=pain_model(), max_frames=12)
    summary, results, log = run(cfg, sinks=[BrokenSink()])
    assert summary.frames == len(results) == 12  # monitored to the end
    assert "No space left on device" in summary.faults["log"] and summary.final_state == "fault"
    assert summary.log_rows_dropped >= 12
    assert "log: FAULT: BrokenSink write failed: OSError" in log


def test_source_credentials_are_redacted_in_events_and_status_lines(tmp_path: Path, pipeline_log: io.StringIO) -> None:
    camera = FakeCamera([face_frame()] * 3 + ["unplug"] + [face_frame()] * 2, fail_opens=1)
    url = "rtsp://nurse:s3cret@10.1.2.3/bed12"
    cfg = config(
        url, model=pain_model(), log_dir=str(tmp_path), status_every_s=0.01, **{"capture.reconnect_initial_s": 0.01}
    )
    log = pipeline_log
    pipeline, capture = build_pipeline(cfg, source=OpenCVSource(url, opener=camera.opener))
    camera.on_exhausted = pipeline.stop
    pipeline.run(capture)
    written = next(tmp_path.glob("*.jsonl")).read_text()
    assert "s3cret" not in written and "s3cret" not in log.getvalue()
    started = read_jsonl(tmp_path)[0]
    assert started["event"] == "run_started" and started["source"] == "rtsp://***@10.1.2.3/bed12"
    assert "source lost" in log.getvalue()


class LosesRowsAtCloseSink(FlakySink):
    """A sink that is in a disk-full fault from its first record and loses the rows it holds at close."""

    def __init__(self) -> None:
        super().__init__(bad_after=1, bad_for_s=1e9)
        self.closed = False

    def health(self):
        from edge_sdk.pipeline.sinks import SinkHealth

        if self.closed:
            return SinkHealth(ok=False, problem="close gave up: 7 rows lost", dropped=7)
        return SinkHealth(ok=False, problem="disk full: 7 rows held in memory", dropped=0)

    def close(self) -> None:
        self.closed = True


def test_rows_lost_at_close_replace_the_runs_log_fault_and_are_in_the_exit_line() -> None:
    from edge_sdk.cli.run import fault_line

    cfg = config(face_file("single_face.mp4"), model=pain_model(), max_frames=3)
    summary, _, log = run(cfg, sinks=[LosesRowsAtCloseSink()])
    assert summary.faults["log"] == "LosesRowsAtCloseSink: close gave up: 7 rows lost"  # not the first problem
    assert summary.log_rows_dropped == 7
    assert "log: FAULT at close: LosesRowsAtCloseSink: close gave up: 7 rows lost (7 row(s) dropped" in log
    line = fault_line(summary)
    assert line is not None and "close gave up: 7 rows lost" in line and "7 result row(s) not logged" in line


def test_a_signal_lost_during_an_alert_is_logged_as_alert_interrupted(pipeline_log: io.StringIO) -> None:
    from edge_sdk.capture.stream import CaptureEvent
    from edge_sdk.pipeline.alerts import PainMonitor, PainSettings
    from edge_sdk.pipeline.runner import Pipeline

    monitor = PainMonitor(PainSettings(raise_after_s=0.5, smoothing="none"))
    for i in range(4):
        monitor.update(i * 0.25, 9.0)
    assert monitor.state is PainState.ALERT
    sink = FlakySink(bad_after=0, bad_for_s=0.0)
    pipeline = Pipeline(analyzer=None, pain=monitor, sinks=[sink])  # type: ignore[arg-type]
    pipeline.on_capture_event(CaptureEvent("source_lost", 10.0, {"reason": "camera unplugged"}))
    kinds = [r["event"] for kind, r in sink.records if kind == "event"]
    assert kinds == ["source_lost", "alert_interrupted"] and "pain: alert interrupted" in pipeline_log.getvalue()


def test_file_events_and_frames_share_the_capture_clock_and_events_keep_their_media_time(tmp_path: Path) -> None:
    """Pain timers run on media time, but every record is stamped on the capture clock: events land inside
    the run (not at 'boot + media seconds', which the log showed ~22 minutes before the session)."""
    model = FaceModel(pain_model())
    real_run = model.backend.run

    def in_pain(batch: np.ndarray):
        outputs = real_run(batch)
        outputs["au_intensity"] = np.full_like(outputs["au_intensity"], 5.0)
        return outputs

    model.backend.run = in_pain  # type: ignore[method-assign]
    cfg = config(face_file("single_face.mp4"), log_dir=str(tmp_path), **{"pain.raise_after_s": 1.0})
    summary, results, _ = run(cfg, model=model)
    assert summary.alerts_raised == 1
    records = read_jsonl(tmp_path)
    frames = [r for r in records if r["kind"] == "frame"]
    events = [r for r in records if r["kind"] == "event"]
    started, stopped = events[0], events[-1]
    assert started["event"] == "run_started" and stopped["event"] == "run_stopped"
    for event in events:
        assert started["timestamp"] <= event["timestamp"] <= stopped["timestamp"], event
    (alert,) = [e for e in events if e["event"] == "alert_raised"]
    (frame,) = [f for f in frames if f["timestamp"] == alert["timestamp"]]  # stamped with its frame's capture time
    assert frame["state"] == "alert" and alert["media_time"] == frame["media_time"]
    assert alert["media_time"] == pytest.approx(1.0, abs=0.1)  # raised after 1 s of the clip, not of processing
    assert alert["above_since"] <= alert["timestamp"] and alert["above_since"] >= started["timestamp"]
