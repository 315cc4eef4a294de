"""``log summary --plot`` on a real encrypted log written by real ``edge-sdk run`` processes (the demo model,
YuNet, real videos from ../shared): raw and smoothed PSPI, the threshold and clear lines, alert spans on the
file's media time, no-face shading, the default session (the latest with frames, never an event-only one), and
a camera-like session on wall time with a no-signal gap."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from edge_sdk.pipeline.config import LogSettings
from edge_sdk.store.db import LogDatabase
from edge_sdk.store.keys import KeySource
from edge_sdk.store.reader import LogRecord, read_records
from edge_sdk.store.sink import EncryptedLogSink
from edge_sdk.store.summary import PainThresholds, choose_session, plot_timeline, timeline_figure
from tests.conftest import REPO
from tests.runtime_fixtures import face_file, yunet_path

plt = pytest.importorskip("matplotlib.pyplot")

# Alert-prone on the demo model (as in test_forward_mqtt): the smoothed PSPI of single_face.mp4 crosses 1.6.
PAIN = (
    "threshold = 1.6\nclear_threshold = 1.3\nraise_after_s = 0.2\nclear_after_s = 0.2\n"
    'smoothing = "ema"\nwindow_s = 0.2\n'
)


def edge_sdk(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "edge_sdk", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[LogRecord]]:
    """Three sessions: single_face.mp4 (alerts), no_face.mp4 (frames, no face), then one with no frames."""
    root = tmp_path_factory.mktemp("plot-log")
    for video in ("single_face.mp4", "no_face.mp4"):
        config = root / f"{video}.toml"
        config.write_text(
            f'model = "demo"\nsource = "{face_file(video)}"\nlog_dir = "{root / "log"}"\nstatus_every_s = 0\n'
            f'[detector]\nmodel = "{yunet_path()}"\n[pain]\n{PAIN}[log]\nkey_file = "{root / "key.json"}"\n'
        )
        done = edge_sdk("run", "--config", str(config), cwd=root)
        assert done.returncode == 0, done.stderr[-3000:]
    EncryptedLogSink.open(root / "log", LogSettings(key_file=str(root / "key.json"))).close()  # events only
    db = LogDatabase.open(root / "log", KeySource(key_file=root / "key.json").load(create=False), read_only=True)
    try:
        records = list(read_records(db))
    finally:
        db.close()
    return root / "log", root / "key.json", records


def sessions(records: list[LogRecord]) -> list[str]:
    return list(dict.fromkeys(r.session for r in records))


def labels(fig) -> list[str]:
    return [text.get_text() for text in fig.axes[0].get_legend().get_texts()]


def test_default_session_is_the_latest_with_frames(log: tuple[Path, Path, list[LogRecord]]) -> None:
    records = log[2]
    faces, no_face, empty = sessions(records)
    assert not any(r.kind == "frame" for r in records if r.session == empty)
    assert choose_session(records) == no_face
    assert choose_session([r for r in records if r.session != no_face]) == faces
    assert choose_session([r for r in records if r.session == empty]) is None


def test_file_session_on_media_time_with_alerts_and_thresholds(log: tuple[Path, Path, list[LogRecord]]) -> None:
    records = log[2]
    session = sessions(records)[0]
    mine = [r for r in records if r.session == session]
    frames = [r for r in mine if r.kind == "frame"]
    raised = [r for r in mine if r.record.get("event") == "alert_raised"]
    assert len(frames) == 72 and raised, (len(frames), len(raised))
    assert PainThresholds.of(mine) == PainThresholds(1.6, 1.3, 2.0, recorded=True)  # run_started's settings
    fig = timeline_figure(mine, "single_face")
    try:
        ax = fig.axes[0]
        assert ax.get_xlabel() == "media time (s into the file)"
        last_media = frames[-1].record["media_time"]
        assert ax.get_xlim() == pytest.approx((0.0, last_media), abs=0.05)  # seconds into the file, not the clock
        legend = labels(fig)
        assert "PSPI per frame" in legend and "PSPI smoothed" in legend, legend
        assert "alert threshold 1.6 / clear 1.3 (as recorded in the log)" in legend, legend
        assert "alert (state)" in legend and "alert raised" in legend, legend
        lines = {line.get_label(): line for line in ax.get_lines()}
        smoothed = [r.record["pspi_smoothed"] for r in frames]
        assert list(lines["PSPI smoothed"].get_ydata()) == pytest.approx(smoothed)
        assert list(lines["PSPI per frame"].get_xdata()) == pytest.approx([r.record["media_time"] for r in frames])
        vertical = [line for line in ax.get_lines() if line.get_color() == "tab:red" and line.get_linestyle() == "-"]
        raised_x = [line.get_xdata()[0] for line in vertical]
        for x, event in zip(raised_x, raised, strict=True):  # each raise drawn where it happened in the file
            assert 0 <= x <= last_media
            assert x == pytest.approx(event.record["media_time"], abs=0.05)
        assert f"{len(raised)} alert(s) raised" in ax.get_title()
    finally:
        plt.close(fig)


def test_no_face_session_is_shaded_and_says_no_pspi(log: tuple[Path, Path, list[LogRecord]]) -> None:
    records = log[2]
    mine = [r for r in records if r.session == sessions(records)[1]]
    fig = timeline_figure(mine)
    try:
        ax = fig.axes[0]
        assert "no face in the frame" in labels(fig)
        assert "no PSPI in this session" in [t.get_text() for t in ax.texts]
        (span,) = [patch for patch in ax.patches if patch.get_label() == "no face in the frame"]  # one, whole
        media = [r.record["media_time"] for r in mine if r.kind == "frame"]
        assert (span.get_x(), span.get_x() + span.get_width()) == pytest.approx((media[0], media[-1]))
    finally:
        plt.close(fig)


def test_camera_session_on_wall_time_with_a_no_signal_gap() -> None:
    """Frames without media time (a camera), a 5 s hole in them, recorded pain settings."""
    start = 1_764_000_000.0

    def frame(i: int, t: float, pspi: float, state: str) -> LogRecord:
        record = {"frame": i, "media_time": None, "faces": [{}] if pspi is not None else [], "state": state}
        record.update({"pspi": pspi, "pspi_smoothed": pspi, "pain_score": pspi, "baseline": None})
        return LogRecord(i, start + t, "frame", "s_cam", None, None, record)

    pain = {"threshold": 5.0, "clear_threshold": 4.0, "frame_timeout_s": 2.0}
    records = [LogRecord(0, start, "event", "s_cam", None, None, {"event": "run_started", "pain": pain})]
    records += [frame(i, i * 0.1, 2.0, "clear") for i in range(1, 20)]
    records += [frame(i, 5.0 + i * 0.1, 6.0, "alert") for i in range(20, 40)]
    assert PainThresholds.of(records) == PainThresholds(5.0, 4.0, 2.0, recorded=True)
    fig = timeline_figure(records)
    try:
        ax = fig.axes[0]
        assert ax.get_xlabel() == "time (UTC)"
        assert "no signal" in labels(fig) and "alert (state)" in labels(fig)
        smoothed = next(line for line in ax.get_lines() if line.get_label() == "PSPI smoothed")
        assert sum(y != y for y in smoothed.get_ydata()) == 1  # the line breaks once, in the 5 s without frames
        assert any("threshold 5 / clear 4 (as recorded in the log)" in text for text in labels(fig)), labels(fig)
        assert isinstance(ax.get_lines()[-1].get_xdata()[0], datetime)
    finally:
        plt.close(fig)


def test_cli_plot_writes_the_png_of_the_latest_session_with_frames(
    log: tuple[Path, Path, list[LogRecord]], tmp_path: Path
) -> None:
    log_dir, key_file, records = log
    out = tmp_path / "timeline.png"
    done = edge_sdk(
        "log", "summary", "--log-dir", str(log_dir), "--key-file", str(key_file), "--plot", str(out), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    latest = sessions(records)[1]
    frames = sum(r.kind == "frame" and r.session == latest for r in records)
    assert f"timeline of session {latest} ({frames} frames)" in done.stdout, done.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_plot_writes_a_png_and_counts_frames(log: tuple[Path, Path, list[LogRecord]], tmp_path: Path) -> None:
    records = log[2]
    mine = [r for r in records if r.session == sessions(records)[0]]
    assert plot_timeline(mine, tmp_path / "a.png", "x") == 72
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
