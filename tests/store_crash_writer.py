"""Writer process for the SIGKILL crash test (run as a script, not collected by pytest).

Writes frame records ``{"trial": T, "i": i}`` as fast as the bounded queue allows and prints
``C <i>`` after every commit: every record with index <= i is durable. The parent kills it at random.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from edge_sdk.pipeline.config import LogSettings
from edge_sdk.store import EncryptedLogSink, LogTuning


def main() -> None:
    log_dir, key_file, trial = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    first_frame_ticket = 2  # ticket 1 is the sink's session_start event

    def on_commit(report) -> None:
        if report.through_ticket >= first_frame_ticket:
            sys.stdout.write(f"C {report.through_ticket - first_frame_ticket}\n")
            sys.stdout.flush()

    sink = EncryptedLogSink.open(
        log_dir,
        LogSettings(key_file=str(key_file), retention_days=None, quota_bytes=None),
        LogTuning(batch_size=16, flush_interval=0.02, queue_limit=100_000),
        session_id=f"trial-{trial}",
        on_commit=on_commit,
    )
    print("READY", flush=True)
    i = 0
    while True:
        ticket = sink.write({"trial": trial, "i": i, "pspi": float(i % 17)}, kind="frame")
        if ticket != i + first_frame_ticket:
            sys.exit(f"unexpected ticket {ticket} for record {i}")
        i += 1
        if i % 50 == 0:
            time.sleep(0.002)  # a camera-like pace with bursts; the writer commits concurrently


if __name__ == "__main__":
    main()
