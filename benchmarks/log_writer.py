"""Throughput of the private result log writer (edge_sdk.store) on this machine.

Measures, with real files and fsync (WAL, synchronous=FULL):
* burst: N frame records written as fast as possible -> committed records/s (end to end, until flush());
* caller cost: time of one ``sink.write`` call (validation + envelope + enqueue), p50/p99 in microseconds;
* paced: 10x camera rate (300 records/s) for a few seconds -> dropped frames and commit lag;
* bytes per row in the database.

    python benchmarks/log_writer.py --machine "2-core x86 dev box, no GPU"

Writes benchmarks/results/log_writer.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

from edge_sdk.pipeline.config import LogSettings
from edge_sdk.store import EncryptedLogSink, LogTuning
from edge_sdk.store.db import log_path

RESULTS = Path(__file__).with_name("results")
AUS = ["AU1", "AU2", "AU4", "AU6", "AU7", "AU9", "AU10", "AU12", "AU15", "AU20", "AU25", "AU43"]
EXPRESSIONS = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"]


def frame_record(i: int) -> dict[str, object]:
    """Shaped like edge_sdk.pipeline FrameResult.to_record() with one face and the four heads."""
    s = math.sin(i / 10)
    face = {
        "box": [120.5, 80.0, 260.0, 240.5],
        "score": 0.97,
        "crop": "aligned",
        "au_occurrence": {au: round(abs(s) / (k + 1), 4) for k, au in enumerate(AUS)},
        "au_intensity": {au: round(abs(s) * 5 / (k + 1), 4) for k, au in enumerate(AUS)},
        "expression": {e: round(1 / 8, 4) for e in EXPRESSIONS},
        "valence_arousal": {"valence": round(s, 4), "arousal": round(-s, 4)},
        "pspi": round(abs(s) * 8, 4),
    }
    return {
        "frame": i,
        "timestamp": 1000.0 + i / 30,
        "media_time": None,
        "faces": [face],
        "detector_ran": True,
        "state": "clear",
        "pspi": face["pspi"],
        "pspi_smoothed": face["pspi"],
        "pain_score": 1.2,
        "baseline": 0.8,
        "latency_ms": {"decode": 1.2, "detect": 8.5, "align": 0.4, "infer": 12.1, "post": 0.2, "sink": 0.05},
    }


def _keep_all(tmp: Path) -> LogSettings:
    """No retention or quota purge while measuring."""
    return LogSettings(key_file=str(tmp / "k.json"), retention_days=None, quota_bytes=None)


def burst(tmp: Path, n: int) -> dict[str, float]:
    sink = EncryptedLogSink.open(tmp / "burst", _keep_all(tmp), LogTuning(queue_limit=n + 10))
    records = [frame_record(i) for i in range(n)]
    call_us = []
    t0 = time.perf_counter()
    for r in records:
        c0 = time.perf_counter()
        sink.write(r)
        call_us.append((time.perf_counter() - c0) * 1e6)
    assert sink.flush(120)
    elapsed = time.perf_counter() - t0
    health = sink.close()
    size = log_path(tmp / "burst").stat().st_size
    call_us.sort()
    return {
        "records": n,
        "seconds": round(elapsed, 3),
        "records_per_s": round(n / elapsed, 1),
        "write_call_us_p50": round(call_us[len(call_us) // 2], 1),
        "write_call_us_p99": round(call_us[int(len(call_us) * 0.99)], 1),
        "dropped": health.dropped,
        "bytes_per_row": round(size / health.committed_rows, 1),
    }


def paced(tmp: Path, rate: float, seconds: float) -> dict[str, float]:
    lags: list[float] = []
    sent: dict[int, float] = {}

    def on_commit(report) -> None:
        now = time.perf_counter()
        lags.append(now - sent.get(report.through_ticket, now))

    sink = EncryptedLogSink.open(tmp / "paced", _keep_all(tmp), on_commit=on_commit)
    n = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(n):
        target = t0 + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        ticket = sink.write(frame_record(i))
        if ticket is not None:
            sent[ticket] = time.perf_counter()
    assert sink.flush(30)
    health = sink.close()
    return {
        "rate_per_s": rate,
        "records": n,
        "dropped": health.dropped,
        "achieved_per_s": round(n / (time.perf_counter() - t0), 1),
        "commit_lag_s_median": round(statistics.median(lags), 3) if lags else None,
        "commit_lag_s_max": round(max(lags), 3) if lags else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", default=f"{platform.machine()} {platform.processor() or ''}".strip())
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--paced-seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        result = {
            "machine": args.machine,
            "python": platform.python_version(),
            "settings": "WAL, synchronous=FULL, batch 64 rows or 1 s, AES-256-GCM + HMAC chain per row",
            "burst": burst(tmp, args.records),
            "paced_10x_camera": paced(tmp, 300.0, args.paced_seconds),
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "log_writer.json").write_text(json.dumps(result, indent=2) + "\n")
    b, p = result["burst"], result["paced_10x_camera"]
    md = f"""# Private log writer throughput

Machine: **{result["machine"]}** (Python {result["python"]}). {result["settings"]}.
Record: a FrameResult-shaped frame record (one face, 12 AU occurrences + intensities, 8 expressions, VA, PSPI,
latencies). Command: `python benchmarks/log_writer.py --machine "{result["machine"]}"`.

| measurement | value |
|---|---|
| burst: committed records/s (end to end, fsync'd) | **{b["records_per_s"]}** ({b["records"]} in {b["seconds"]} s) |
| `sink.write` call, p50 / p99 | {b["write_call_us_p50"]} us / {b["write_call_us_p99"]} us |
| bytes per row on disk | {b["bytes_per_row"]} |
| paced at 300 records/s (10x a 30 fps camera): dropped | {p["dropped"]} of {p["records"]} |
| paced: commit lag median / max | {p["commit_lag_s_median"]} s / {p["commit_lag_s_max"]} s |

Target: >= 300 records/s (10x camera rate). Commit lag = from the write of a batch's last row to its COMMIT
(a row waits at most 1 s or 64 rows before one fsync'd transaction).
"""
    (RESULTS / "log_writer.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
