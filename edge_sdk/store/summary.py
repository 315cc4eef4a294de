"""Clinician summaries of the log: per-hour figures and a PNG timeline of PSPI and alerts for a session.

Which record fields mean what is in :data:`FIELDS` (one table, matching ``edge_sdk.pipeline``'s
``FrameResult.to_record`` and alert events), so a change of record layout is a one-line change here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from edge_sdk.errors import EdgeSdkError, InputError
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


def plot_timeline(records: Iterable[LogRecord], out: Path, title: str) -> int:
    """PNG: PSPI over time with alert events as red lines. Returns the number of frames plotted."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EdgeSdkError(
            "the timeline plot needs matplotlib, which is not installed (pip install matplotlib)"
        ) from None
    times, pspi, alerts = [], [], []
    for r in records:
        when = datetime.fromtimestamp(r.time, timezone.utc)
        if r.kind == "frame":
            value = r.record.get(FIELDS["pspi"])
            times.append(when)
            pspi.append(
                float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")
            )
        elif is_alert(r):
            alerts.append(when)
    if not times and not alerts:
        raise InputError("nothing to plot: no frame or alert records for that session and time range")
    fig, ax = plt.subplots(figsize=(10, 3.5), dpi=100)
    ax.plot(times, pspi, lw=0.8, color="tab:blue", label="PSPI")
    for i, when in enumerate(alerts):
        ax.axvline(when, color="tab:red", lw=1.0, alpha=0.8, label="alert" if i == 0 else None)
    ax.set_ylim(0, 16)
    ax.set_ylabel("PSPI (0-16)")
    ax.set_xlabel("time (UTC)")
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.autofmt_xdate()
    fig.tight_layout()
    try:
        fig.savefig(out, format="png")
    except OSError as exc:
        raise EdgeSdkError(f"--plot {out}: cannot write the PNG ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)
    return len(times)
