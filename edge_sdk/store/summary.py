"""Clinician summaries of the log: per-hour figures and a PNG timeline of PSPI and alerts for a session.

Which record fields mean what is in :data:`FIELDS` (one table, matching ``edge_sdk.pipeline``'s
``FrameResult.to_record`` and alert events), so a change of record layout is a one-line change here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from edge_sdk.errors import EdgeSdkError, InputError
from edge_sdk.plotting import pyplot
from edge_sdk.store.reader import LogRecord

FIELDS = {
    "pspi": "pspi",  # frame record: PSPI of the frame (None without a face)
    "faces": "faces",  # frame record: list of faces (empty = no face)
    "event": "event",  # event/alert record: what happened
}
ALERT_EVENTS = frozenset({"alert_raised"})


def is_alert(r: LogRecord) -> bool:
    return r.kind == "alert" or (r.kind == "event" and r.record.get(FIELDS["event"]) in ALERT_EVENTS)


def _has_face(record: dict[str, object]) -> bool:
    faces = record.get(FIELDS["faces"])
    return bool(faces) if faces is not None else record.get(FIELDS["pspi"]) is not None


@dataclass
class HourSummary:
    hour: datetime
    frames: int = 0
    frames_with_face: int = 0
    alerts: int = 0
    pspi_values: list[float] = field(default_factory=list, repr=False)

    @property
    def pspi_mean(self) -> float | None:
        return sum(self.pspi_values) / len(self.pspi_values) if self.pspi_values else None

    @property
    def pspi_max(self) -> float | None:
        return max(self.pspi_values) if self.pspi_values else None

    def as_row(self) -> dict[str, object]:
        mean, peak = self.pspi_mean, self.pspi_max
        return {
            "hour": self.hour.strftime("%Y-%m-%d %H:00Z"),
            "frames": self.frames,
            "with_face": self.frames_with_face,
            "pspi_mean": None if mean is None else round(mean, 2),
            "pspi_max": None if peak is None else round(peak, 2),
            "alerts": self.alerts,
        }


def hourly_summary(records: Iterable[LogRecord]) -> list[HourSummary]:
    hours: dict[datetime, HourSummary] = {}
    for r in records:
        when = datetime.fromtimestamp(r.time, timezone.utc).replace(minute=0, second=0, microsecond=0)
        h = hours.setdefault(when, HourSummary(when))
        if r.kind == "frame":
            h.frames += 1
            h.frames_with_face += _has_face(r.record)
            pspi = r.record.get(FIELDS["pspi"])
            if isinstance(pspi, (int, float)) and not isinstance(pspi, bool):
                h.pspi_values.append(float(pspi))
        elif is_alert(r):
            h.alerts += 1
    return [hours[k] for k in sorted(hours)]


def format_table(rows: list[dict[str, object]]) -> str:
    if not rows:
        return "(no records in range)"
    cols = list(rows[0])
    cells = [[("-" if row[c] is None else str(row[c])) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=False))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=False)) for r in cells]
    return "\n".join(lines)


#: Frame states shaded on the timeline: state -> (label, colour, hatch). ``no_signal`` also covers gaps between
#: frames longer than ``frame_timeout_s`` (the runner writes no frame while the source is gone).
SHADED_STATES = {
    "no_face": ("no face in the frame", "0.80", None),
    "no_signal": ("no signal", "0.55", "//"),
    "fault": ("fault", "tab:purple", "xx"),
}
EVENT_MATCH_S = 1.0  # an event without media_time is placed on a file's axis only this close to a frame
_PAIN_DEFAULTS = {"threshold": 4.0, "clear_threshold": 3.0, "frame_timeout_s": 2.0}  # PainSettings' defaults


def choose_session(records: Iterable[LogRecord]) -> str | None:
    """The session ``log summary --plot`` draws by default: the one with the latest frame record; None when
    there are no frames. A session without frames (a run that never got one, a tool that only wrote events)
    is never chosen, however recent."""
    latest: str | None = None
    for r in records:
        if r.kind == "frame":
            latest = r.session
    return latest


@dataclass(frozen=True)
class PainThresholds:
    """The thresholds a session ran with: from its ``run_started`` event's ``pain`` settings when recorded,
    else PainSettings' defaults (``recorded`` False: the plot says so)."""

    threshold: float
    clear_threshold: float
    frame_timeout_s: float
    recorded: bool

    @classmethod
    def of(cls, records: Iterable[LogRecord]) -> PainThresholds:
        settings: dict[str, object] | None = None
        for r in records:
            if r.kind == "event" and isinstance(r.record.get("pain"), dict):
                settings = r.record["pain"]  # type: ignore[assignment]  # the last run_started of the session
        values = {k: _number((settings or {}).get(k)) for k in _PAIN_DEFAULTS}
        recorded = values["threshold"] is not None and values["clear_threshold"] is not None
        merged = {k: v if v is not None and recorded else _PAIN_DEFAULTS[k] for k, v in values.items()}
        return cls(recorded=recorded, **merged)

    @property
    def label(self) -> str:
        where = "as recorded in the log" if self.recorded else "not recorded in the log: defaults or given"
        return f"threshold {self.threshold:g} / clear {self.clear_threshold:g} ({where})"


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass
class _Timeline:
    """One session's frames on one axis: media seconds for a file source, UTC wall time otherwise."""

    media: bool
    x: list = field(default_factory=list)  # float seconds (media) or datetime (wall)
    seconds: list[float] = field(default_factory=list)  # the same instants as float seconds, for gap checks
    raw: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)  # the frames' wall times (seconds since the epoch)
    baseline_used: bool = False
    alert_raised: list = field(default_factory=list)  # x of alert_raised events that map onto the axis
    alerts: int = 0  # alert_raised events in the session (placed on the axis or not)

    @classmethod
    def of(cls, records: list[LogRecord]) -> _Timeline:
        frames = [r for r in records if r.kind == "frame"]
        media = bool(frames) and all(_number(r.record.get("media_time")) is not None for r in frames)
        t = cls(media=media)
        nan = float("nan")
        for r in frames:
            rec = r.record
            seconds = _number(rec.get("media_time")) if media else r.time
            t.seconds.append(seconds)  # type: ignore[arg-type]
            t.wall.append(r.time)
            t.x.append(seconds if media else datetime.fromtimestamp(r.time, timezone.utc))
            t.raw.append(_or(_number(rec.get(FIELDS["pspi"])), nan))
            t.smoothed.append(_or(_number(rec.get("pspi_smoothed")), nan))
            t.score.append(_or(_number(rec.get("pain_score")), nan))
            t.baseline_used |= bool(_number(rec.get("baseline")))
            state = str(rec.get("state") or "")
            if not _has_face(rec) and state not in ("no_signal", "fault"):
                state = "no_face"  # also the first face_lost_after_s of a gap, which the monitor still holds
            t.states.append(state)
        for r in records:
            if is_alert(r):
                t.alerts += 1
                x = t.event_x(r)
                if x is not None:
                    t.alert_raised.append(x)
        return t

    def event_x(self, r: LogRecord) -> object | None:
        """Where an event lies on this axis; None when it cannot be placed (a file event without media_time)."""
        if not self.media:
            return datetime.fromtimestamp(r.time, timezone.utc)
        media_time = _number(r.record.get("media_time"))
        if media_time is not None:
            return media_time
        # A log whose events carry no media_time: the media time of the frame nearest in wall time, if one is close.
        if not self.wall:
            return None
        nearest = min(range(len(self.wall)), key=lambda i: abs(self.wall[i] - r.time))
        return self.seconds[nearest] if abs(self.wall[nearest] - r.time) <= EVENT_MATCH_S else None

    def broken_at_gaps(self, gap_s: float, *series: list[float]) -> tuple[list, list[list[float]]]:
        """``x`` and ``series`` with a NaN point inserted in every gap longer than ``gap_s``, so that lines are
        not drawn across a time without frames."""
        x: list = []
        out: list[list[float]] = [[] for _ in series]
        for i, xi in enumerate(self.x):
            if i and self.seconds[i] - self.seconds[i - 1] > gap_s:
                x.append(xi)
                for values in out:
                    values.append(float("nan"))
            x.append(xi)
            for values, source in zip(out, series, strict=True):
                values.append(source[i])
        return x, out

    def spans(self, keep, gap_s: float | None = None) -> list[tuple[object, object]]:
        """(start x, end x) of the runs of frames for which ``keep(state)`` holds (each frame lasting until the
        next); with ``gap_s``, also every gap between frames longer than that."""
        spans: list[tuple[object, object]] = []
        start = None
        for i, state in enumerate(self.states):
            end = self.x[i + 1] if i + 1 < len(self.x) else self.x[i]
            if keep(state):
                start = self.x[i] if start is None else start
                if i + 1 == len(self.states) or not keep(self.states[i + 1]):
                    spans.append((start, end))
                    start = None
        if gap_s is not None:
            for i in range(1, len(self.seconds)):
                if self.seconds[i] - self.seconds[i - 1] > gap_s:
                    spans.append((self.x[i - 1], self.x[i]))
        return spans


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def plot_timeline(
    records: Iterable[LogRecord], out: Path, title: str | None = None, thresholds: PainThresholds | None = None
) -> int:
    """PNG of one session's pain timeline; returns the number of frames plotted.

    ``records``: one session's records (the CLI filters by ``--session`` or :func:`choose_session`). Drawn:
    raw PSPI per frame (thin), the smoothed PSPI the monitor used (thick; with a neutral baseline, also the
    score = smoothed - baseline that the thresholds see), the threshold and clear lines with the hysteresis
    band between them (the session's recorded pain settings, else the defaults, said in the legend), alert
    spans (frames in state ``alert``, red) with a marker at each ``alert_raised``, and shading where there was
    no face, no signal (including gaps between frames) or a fault. The x-axis is media time (seconds into the
    file) for file sources, UTC wall time for cameras and streams. ``thresholds`` overrides what the log
    records (``PainThresholds(..., recorded=False)`` for values given by hand).
    """
    plt = _pyplot()
    records = list(records)
    fig = timeline_figure(records, title, thresholds)
    try:
        fig.savefig(out, format="png")
    except OSError as exc:
        raise EdgeSdkError(f"--plot {out}: cannot write the PNG ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)
    return sum(r.kind == "frame" for r in records)


def _pyplot():  # -> matplotlib.pyplot
    return pyplot("the timeline plot (--plot)")


def timeline_figure(
    records: Iterable[LogRecord], title: str | None = None, thresholds: PainThresholds | None = None
):  # -> matplotlib.figure.Figure
    """The figure :func:`plot_timeline` saves (the caller closes it with ``matplotlib.pyplot.close``)."""
    plt = _pyplot()
    records = list(records)
    t = _Timeline.of(records)
    if not t.x:
        raise InputError("nothing to plot: no frame records for that session and time range")
    limits = thresholds or PainThresholds.of(records)
    fig, ax = plt.subplots(figsize=(11, 5.0), dpi=110)
    top = max([limits.threshold, *(v for v in t.raw + t.smoothed + t.score if math.isfinite(v))])
    top = min(16.0, max(4.0, math.ceil(top * 1.2)))
    ax.axhspan(limits.clear_threshold, limits.threshold, color="tab:orange", alpha=0.12, lw=0, label=None)
    ax.axhline(limits.threshold, color="tab:red", lw=1.0, ls="--", label=f"alert {limits.label}")
    ax.axhline(limits.clear_threshold, color="tab:orange", lw=1.0, ls=":", label="clear below (hysteresis band shaded)")
    for state, (label, color, hatch) in SHADED_STATES.items():
        gap = limits.frame_timeout_s if state == "no_signal" else None
        for i, (x0, x1) in enumerate(t.spans(lambda s, state=state: s == state, gap)):
            ax.axvspan(x0, x1, color=color, alpha=0.35, lw=0, hatch=hatch, label=label if i == 0 else None)
    alert_spans = t.spans(lambda s: s == "alert")
    for i, (x0, x1) in enumerate(alert_spans):
        ax.axvspan(x0, x1, color="tab:red", alpha=0.18, lw=0, label="alert (state)" if i == 0 else None)
    for i, x in enumerate(t.alert_raised):
        ax.axvline(x, color="tab:red", lw=1.2, label="alert raised" if i == 0 else None)
    x, (raw, smoothed, score) = t.broken_at_gaps(limits.frame_timeout_s, t.raw, t.smoothed, t.score)
    ax.plot(x, raw, lw=0.6, color="tab:blue", alpha=0.45, label="PSPI per frame")
    ax.plot(x, smoothed, lw=1.8, color="tab:blue", label="PSPI smoothed")
    if t.baseline_used:
        ax.plot(x, score, lw=1.2, color="tab:green", ls="--", label="score = smoothed - baseline (vs thresholds)")
    ax.set_ylim(0, top)
    ax.set_ylabel("PSPI (0-16)")
    if t.media:
        ax.set_xlabel("media time (s into the file)")
        ax.set_xlim(t.x[0], t.x[-1])
    else:
        ax.set_xlabel("time (UTC)")
        fig.autofmt_xdate()
    scored = sum(math.isfinite(v) for v in t.raw)
    ax.set_title(
        f"{title + ': ' if title else ''}{len(t.x)} frames, {scored} scored, {t.alerts} alert(s) raised",
        fontsize=10,
    )
    if not scored:
        ax.text(0.5, 0.5, "no PSPI in this session", transform=ax.transAxes, ha="center", va="center", color="0.3")
    below = -0.16 if t.media else -0.3  # under the x label (rotated dates need more room)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, below), ncol=3, fontsize=8, frameon=False)
    ax.grid(alpha=0.25)
    fig.tight_layout()
    return fig
