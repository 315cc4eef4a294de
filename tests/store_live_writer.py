"""Writer process for the live-log tests (run as a script, not collected by pytest).

``python store_live_writer.py LOG_DIR KEY_FILE RATE`` writes frame records ``{"i": i}`` at about RATE per
second through :class:`EncryptedLogSink` (commits of 8 rows or every 20 ms) until it is killed, and prints
``C <last_seq>`` after every commit.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from edge_sdk.pipeline.config import LogSettings
from edge_sdk.store import EncryptedLogSink, LogTuning


def main() -> None:
    log_dir, key_file, rate = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])

    def on_commit(report) -> None:
        sys.stdout.write(f"C {report.last_seq}\n")
        sys.stdout.flush()

    sink = EncryptedLogSink.open(
        log_dir,
        LogSettings(key_file=str(key_file), retention_days=None, quota_bytes=None),
        LogTuning(batch_size=8, flush_interval=0.02),
        on_commit=on_commit,
    )
    print("READY", flush=True)
    i = 0
    while True:
        sink.write({"i": i, "pspi": float(i % 16)}, kind="frame")
        i += 1
        time.sleep(1.0 / rate)


if __name__ == "__main__":
    main()
