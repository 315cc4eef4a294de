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
    assert events == [(1.5, "face_lost", "no_face"), (2.0, "face_found", "clear"), (3.0, "alert_raised", "alert")]


def test_baseline_is_subtracted_before_thresholding() -> None:
    settings = PainSettings(**{**RAW.__dict__, "baseline_s": 1.0})
    monitor = PainMonitor(settings)
    events = feed(monitor, [3.0] * 5 + [6.0] * 8 + [7.5] * 5)
    # baseline = median of t=0..1.0 = 3.0 -> 6.0 scores 3.0 (< 4: no alert); 7.5 scores 4.5 from t=3.25
    assert events[0][:2] == (1.0, "baseline_captured")
    assert monitor.baseline == 3.0
    assert events[1:] == [(4.25, "alert_raised", "alert")]
    status = monitor.update(4.5, 7.5)
    assert status.score == pytest.approx(4.5) and status.pspi == 7.5


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
