"""The pain state machine driven by scripted PSPI sequences: exact transitions at exact times."""

from __future__ import annotations

import pytest

from edge_sdk.errors import InputError
from edge_sdk.pipeline.alerts import EmaSmoother, MedianSmoother, PainMonitor, PainSettings, PainState

STEP = 0.25  # seconds per frame: exactly representable, so timings compare exactly

RAW = PainSettings(
    threshold=4.0,
    clear_threshold=2.0,
    raise_after_s=1.0,
    clear_after_s=2.0,
    smoothing="none",
    face_lost_after_s=1.0,
)


def feed(monitor: PainMonitor, values: list[float | None], start: float = 0.0) -> list[tuple[float, str, str]]:
    """Run a sequence (one value per STEP); return (time, event, new state) for every transition."""
    events = []
    for i, value in enumerate(values):
        status = monitor.update(start + i * STEP, value)
        events += [(e.timestamp, e.kind, e.state) for e in status.events]
    return events


def test_rise_raises_only_after_the_hold_time() -> None:
    monitor = PainMonitor(RAW)
    # below for 1 s, then above from t=1.0: raise exactly at t=2.0 (held 1.0 s)
    events = feed(monitor, [1.0] * 4 + [5.0] * 6)
    assert events == [(2.0, "alert_raised", "alert")]
    assert monitor.state is PainState.ALERT


def test_flicker_above_threshold_never_raises() -> None:
    monitor = PainMonitor(RAW)
    # 0.75 s above, one frame below, 0.75 s above, ...: the hold timer restarts every time
    events = feed(monitor, ([5.0] * 3 + [3.0]) * 6)
    assert events == []
    assert monitor.state is PainState.CLEAR


def test_sustained_then_recovery_with_hysteresis() -> None:
    monitor = PainMonitor(RAW)
    values = [5.0] * 8  # t=0..1.75: raise at t=1.0
    values += [3.0] * 8  # t=2.0..3.75: between the thresholds: the alert holds
    values += [1.0] * 12  # t=4.0..6.75: below clear_threshold from t=4.0: clear at t=6.0
    events = feed(monitor, values)
    assert events == [(1.0, "alert_raised", "alert"), (6.0, "alert_cleared", "clear")]


def test_dip_below_clear_threshold_that_is_too_short_keeps_the_alert() -> None:
    monitor = PainMonitor(RAW)
    events = feed(monitor, [5.0] * 5 + [1.0] * 7 + [5.0] + [1.0] * 9)
    # raise at 1.0; below 1.25..2.75 (1.5 s < 2 s), back above at 3.0, below again from 3.25: clear at 5.25
    assert events == [(1.0, "alert_raised", "alert"), (5.25, "alert_cleared", "clear")]


def test_face_lost_is_its_own_state_and_has_no_pain_values() -> None:
    monitor = PainMonitor(RAW)
    events = feed(monitor, [5.0] * 5 + [None] * 6 + [1.0])
    # alert at 1.0; last face at 1.0; no face from 1.25; lost after 1.0 s -> t=2.0; face again at 2.75
    assert events == [
        (1.0, "alert_raised", "alert"),
        (2.0, "face_lost", "no_face"),
        (2.75, "face_found", "clear"),
    ]
    status = monitor.update(3.0, None)
    assert status.pspi is None and status.score is None


def test_short_face_gap_holds_the_state() -> None:
    monitor = PainMonitor(RAW)
    events = feed(monitor, [5.0] * 5 + [None] * 3 + [5.0])
    assert events == [(1.0, "alert_raised", "alert")]
    assert monitor.state is PainState.ALERT


def test_no_face_from_the_start() -> None:
    monitor = PainMonitor(RAW)
    assert feed(monitor, [None] * 6) == [(1.0, "face_lost", "no_face")]


def test_timers_restart_after_face_returns() -> None:
    monitor = PainMonitor(RAW)
    # above 0.75 s, face lost (>= 1 s), back and above: needs a full 1.0 s hold again
    events = feed(monitor, [5.0] * 3 + [None] * 5 + [5.0] * 6)
    # (unknown, not clear, while the score is >= threshold before the alert)
    assert events == [(1.5, "face_lost", "no_face"), (2.0, "face_found", "unknown"), (3.0, "alert_raised", "alert")]


def test_baseline_is_subtracted_before_thresholding() -> None:
    settings = PainSettings(**{**RAW.__dict__, "baseline_s": 1.0})
    monitor = PainMonitor(settings)
    events = feed(monitor, [1.5] * 5 + [4.5] * 8 + [6.0] * 5)
    # baseline = median of t=0..1.0 = 1.5 -> 4.5 scores 3.0 (< 4: no alert); 6.0 scores 4.5 from t=3.25
    assert events[0][:2] == (1.0, "baseline_captured")
    assert monitor.baseline == 1.5
    assert events[1:] == [(4.25, "alert_raised", "alert")]
    status = monitor.update(4.5, 6.0)
    assert status.score == pytest.approx(4.5) and status.pspi == 6.0


def test_unavailable_never_changes_state() -> None:
    monitor = PainMonitor(RAW, available=False)
    assert feed(monitor, [5.0, None, 9.0]) == []
    assert monitor.update(1.0, None).state is PainState.UNAVAILABLE


def test_median_smoothing_is_in_seconds_not_frames() -> None:
    smoother = MedianSmoother(window_s=1.0)
    # a single-frame spike is removed whatever the frame rate
    assert [smoother.update(t * 0.1, v) for t, v in enumerate([1, 1, 1, 9, 1])][-2:] == [1, 1]
    smoother.reset()
    # at 1 frame/s only the current value is inside a 1 s window
    assert [smoother.update(float(t), v) for t, v in enumerate([1.0, 9.0])] == [1.0, 9.0]


def test_ema_time_constant_does_not_depend_on_frame_rate() -> None:
    fast, slow = EmaSmoother(2.0), EmaSmoother(2.0)
    fast.update(0.0, 0.0)
    slow.update(0.0, 0.0)
    for i in range(1, 31):
        a = fast.update(i / 30, 10.0)
    b = slow.update(1.0, 10.0)
    assert a == pytest.approx(b, rel=1e-9)  # both after 1 s of a step to 10


def test_smoothed_spike_does_not_raise() -> None:
    settings = PainSettings(**{**RAW.__dict__, "smoothing": "median", "window_s": 1.0})
    monitor = PainMonitor(settings)
    assert feed(monitor, [1.0] * 4 + [12.0] + [1.0] * 8) == []


def test_clear_threshold_above_threshold_is_rejected() -> None:
    with pytest.raises(InputError, match="clear_threshold"):
        PainSettings(threshold=3.0, clear_threshold=4.0)


# ---- never "clear" without evidence; faults are states --------------------------------------------------
def states(monitor: PainMonitor, values: list[float | None], start: float = 0.0) -> list[str]:
    """The state shown after each value (one per STEP)."""
    return [monitor.update(start + i * STEP, v).state.value for i, v in enumerate(values)]


def test_unknown_until_the_first_score_then_no_face_never_clear() -> None:
    monitor = PainMonitor(RAW)
    assert monitor.state is PainState.UNKNOWN
    assert states(monitor, [None] * 6) == ["unknown"] * 4 + ["no_face"] * 2  # lost after face_lost_after_s = 1.0
    monitor = PainMonitor(RAW)
    events = []
    for i in range(5):
        events += monitor.update(i * STEP, None).events
    assert [(e.kind, e.previous, e.state) for e in events] == [("face_lost", "unknown", "no_face")]
    assert PainMonitor(RAW).update(0.0, 1.0).state is PainState.CLEAR  # the first finite score of a face


def test_one_nan_frame_does_not_poison_the_smoothing_and_pain_still_alerts() -> None:
    settings = PainSettings(**{**RAW.__dict__, "smoothing": "ema", "window_s": 2.0})
    monitor = PainMonitor(settings)
    statuses = [monitor.update(i * STEP, v) for i, v in enumerate([float("nan")] + [10.0] * 40)]  # then 10 s of 10
    events = [(e.timestamp, e.kind) for s in statuses for e in s.events]
    assert events == [(0.0, "model_fault"), (0.25, "model_recovered"), (1.25, "alert_raised")]
    assert statuses[0].pspi is None and statuses[0].score is None  # the bad frame is not scored: null, never 0
    assert statuses[-1].score == pytest.approx(10.0) and statuses[-1].state is PainState.ALERT


def test_bad_frames_enter_fault_after_the_window_once_per_episode_then_resume() -> None:
    settings = PainSettings(**{**RAW.__dict__, "fault_after_s": 0.5})
    monitor = PainMonitor(settings)
    nan, inf = float("nan"), float("inf")
    shown = states(monitor, [5.0] * 6 + [nan, inf, 40.0, -1.0, nan] + [5.0] * 2)
    # alert at 1.0 s; bad from 1.5 s: 1.5, 1.75 hold the alert, fault from 2.0 (0.5 s); a good frame resumes it
    assert shown == ["unknown"] * 4 + ["alert"] * 2 + ["alert", "alert", "fault", "fault", "fault", "alert", "alert"]
    monitor = PainMonitor(settings)
    events = feed(monitor, [5.0] * 6 + [nan] * 5 + [5.0] + [nan] * 2)
    # two episodes, one model_fault each (5 bad frames, then 2): recovered by the good frame between them
    assert [kind for _, kind, _ in events] == ["alert_raised", "model_fault", "model_recovered", "model_fault"]


def test_a_frame_without_a_face_does_not_end_a_fault_episode() -> None:
    settings = PainSettings(**{**RAW.__dict__, "fault_after_s": 0.5, "face_lost_after_s": 5.0})
    monitor = PainMonitor(settings)
    shown = states(monitor, [2.0, float("nan"), None, None, float("nan"), None, 2.0])
    assert shown == ["clear", "clear", "clear", "clear", "fault", "fault", "clear"]
    assert monitor.update(2.0, None, fault="detect failed: error").events[0].kind == "model_fault"


def test_model_fault_text_and_null_pain_in_the_record() -> None:
    monitor = PainMonitor(PainSettings(**{**RAW.__dict__, "fault_after_s": 0.25}))
    monitor.update(0.0, 3.0)
    monitor.update(0.25, None, fault="bad model output: au_intensity: 13 non-finite value(s)")
    record = monitor.update(0.5, None, fault="bad model output: au_intensity: 13 non-finite value(s)").to_record()
    assert record["state"] == "fault" and record["pain_score"] is None and record["pspi"] is None
    assert record["fault"] == "model: bad model output: au_intensity: 13 non-finite value(s)"


def test_no_signal_then_unknown_until_a_face_is_scored_again() -> None:
    monitor = PainMonitor(RAW)
    feed(monitor, [5.0] * 6)
    assert monitor.state is PainState.ALERT
    assert [e.kind for e in monitor.signal_lost()] == ["alert_interrupted"]
    assert monitor.state is PainState.NO_SIGNAL
    assert states(monitor, [None] * 5, start=10.0) == ["unknown"] * 4 + ["no_face"]  # counted from the return
    assert monitor.update(12.0, 1.0).events[0].kind == "face_found"


def test_a_log_fault_is_shown_over_clear_but_never_hides_an_alert() -> None:
    monitor = PainMonitor(RAW)
    monitor.update(0.0, 1.0)
    monitor.log_fault("disk full: 12 rows held in memory")
    status = monitor.update(0.25, 1.0)
    assert status.state is PainState.FAULT and status.fault == "log: disk full: 12 rows held in memory"
    events = feed(monitor, [5.0] * 6, start=0.5)  # the pain assessment goes on underneath
    assert [kind for _, kind, _ in events] == ["alert_raised"]
    assert monitor.state is PainState.ALERT
    monitor.log_fault(None)
    assert monitor.state is PainState.ALERT and monitor.fault is None


def test_unavailable_pain_still_shows_faults_and_no_signal() -> None:
    monitor = PainMonitor(PainSettings(fault_after_s=0.1), available=False)
    assert monitor.update(0.0, None, fault="infer failed: boom").state is PainState.UNAVAILABLE
    assert monitor.update(0.2, None, fault="infer failed: boom").state is PainState.FAULT
    assert monitor.update(0.4, None, face=True).state is PainState.UNAVAILABLE
    monitor.signal_lost()
    assert monitor.state is PainState.NO_SIGNAL


@pytest.mark.parametrize("key", ["frame_timeout_s", "fault_after_s"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), float("nan"), 3600.0])
def test_signal_and_fault_timeouts_are_finite_and_sane(key: str, value: float) -> None:
    with pytest.raises(InputError, match=f"pain.{key}"):
        PainSettings(**{key: value})


def test_the_fault_text_stays_one_short_line_for_the_log() -> None:
    monitor = PainMonitor(PainSettings(fault_after_s=0.1))
    monitor.log_fault("disk full " * 30)
    status = monitor.update(0.0, None, fault="infer failed: " + "x" * 300)
    assert status.fault is not None and status.fault.startswith("model: infer failed") and len(status.fault) <= 240


# ---- never clear during pain after a (re)start; never end an alert silently ------------------------------
def test_a_baseline_taken_during_pain_is_rejected_and_the_pain_still_alerts() -> None:
    settings = PainSettings(**{**RAW.__dict__, "baseline_s": 2.0})
    monitor = PainMonitor(settings)
    statuses = [monitor.update(i * STEP, 12.0) for i in range(40)]  # PSPI 12 for 10 s
    events = [e for s in statuses for e in s.events]
    assert [(e.timestamp, e.kind, e.state) for e in events] == [
        (2.0, "baseline_rejected", "unknown"),  # never calibrating forever, never clear while at 12
        (3.0, "alert_raised", "alert"),  # raise_after_s = 1.0 from the end of calibration
    ]
    assert events[0].detail["measured"] == 12.0 and "clear_threshold" in events[0].detail["reason"]
    assert monitor.baseline == 0.0 and statuses[-1].score == 12.0
    assert "clear" not in {s.state.value for s in statuses}


def test_a_high_score_after_a_restart_is_unknown_until_the_alert_never_clear() -> None:
    # the first score of a run: unknown while >= threshold, then the raise timer fires
    assert states(PainMonitor(RAW), [5.0] * 5) == ["unknown"] * 4 + ["alert"]
    assert states(PainMonitor(RAW), [5.0, 5.0, 1.0]) == ["unknown", "unknown", "clear"]  # or the score drops
    # the face found again during pain
    monitor = PainMonitor(RAW)
    feed(monitor, [1.0] + [None] * 5)
    assert monitor.state is PainState.NO_FACE
    status = monitor.update(2.0, 5.0)
    assert status.state is PainState.UNKNOWN and [(e.kind, e.state) for e in status.events] == [
        ("face_found", "unknown")
    ]
    # the signal back during pain (no alert was active)
    monitor = PainMonitor(RAW)
    feed(monitor, [1.0] * 2)
    monitor.signal_lost()
    assert states(monitor, [5.0] * 5, start=5.0) == ["unknown"] * 4 + ["alert"]
    # a model fault recovered during pain
    monitor = PainMonitor(PainSettings(**{**RAW.__dict__, "fault_after_s": 0.5}))
    assert states(monitor, [1.0] + [float("nan")] * 3 + [5.0]) == ["clear", "clear", "clear", "fault", "unknown"]


def test_a_signal_blip_during_an_alert_is_an_event_and_the_alert_resumes() -> None:
    monitor = PainMonitor(RAW)
    feed(monitor, [5.0] * 8)  # alert raised at 1.0, last frame at 1.75
    (event,) = monitor.signal_lost()
    assert (event.kind, event.previous, event.state) == ("alert_interrupted", "alert", "unknown")
    assert event.timestamp == 1.75 and event.detail["alert_s"] == 0.75 and event.detail["reason"] == "signal lost"
    assert monitor.state is PainState.NO_SIGNAL
    status = monitor.update(3.0, 3.0)  # back, still >= clear_threshold (2.0): the alert resumes at once
    assert status.state is PainState.ALERT
    assert [(e.kind, e.state, e.detail["alert_since"]) for e in status.events] == [("alert_resumed", "alert", 1.0)]
    # back below clear_threshold: the alert was already ended by its alert_interrupted event
    monitor = PainMonitor(RAW)
    feed(monitor, [5.0] * 8)
    assert [e.kind for e in monitor.signal_lost()] == ["alert_interrupted"]
    assert monitor.update(3.0, 1.0).state is PainState.CLEAR


def test_a_file_runs_its_timers_on_media_time_and_stamps_events_with_the_capture_time() -> None:
    """A file processed at half speed: media t -> captured at 1000 + 2 t. Timers (raise after 1 s) follow the
    media clock; events and the instants in them are on the capture clock, with the media time beside."""
    monitor = PainMonitor(RAW)
    events = []
    for i in range(8):
        t = i * STEP
        events += monitor.update(t, 5.0, at=1000.0 + 2 * t).events
    (raised,) = events
    assert (raised.kind, raised.timestamp, raised.media_time) == ("alert_raised", 1002.0, 1.0)
    assert raised.detail["above_since"] == 1000.0
    assert raised.to_record()["media_time"] == 1.0
    (cut,) = monitor.signal_lost()
    assert (cut.timestamp, cut.media_time, cut.detail["alert_since"]) == (1003.5, 1.75, 1002.0)
    assert cut.detail["alert_s"] == 0.75  # durations stay on the media clock
    (resumed,) = monitor.update(3.0, 3.0, at=1010.0).events
    assert (resumed.kind, resumed.timestamp, resumed.media_time) == ("alert_resumed", 1010.0, 3.0)
    assert resumed.detail["alert_since"] == 1002.0
    camera = PainMonitor(RAW)  # no ``at``: the frame clock is the capture clock, no media time
    (raised,) = [e for i in range(8) for e in camera.update(i * STEP, 5.0).events]
    assert (raised.timestamp, raised.media_time, raised.to_record()["media_time"]) == (1.0, None, None)
