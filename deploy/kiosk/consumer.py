"""Kiosk consumer example: receive the anonymous summaries on a Unix socket, keep 60 s in memory only.

python3 deploy/kiosk/consumer.py --socket /run/edge-sdk/kiosk.sock
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import time

RETENTION_S = 60.0


def serve(path: str, retention_s: float = RETENTION_S) -> None:
    if os.path.exists(path):
        os.unlink(path)
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    os.chmod(path, 0o660)
    window: collections.deque[dict] = collections.deque()
    while True:
        message = json.loads(receiver.recv(65536))
        window.append(message)
        while window and window[0]["t"] < time.time() - retention_s:
            window.popleft()  # short retention: older summaries are simply forgotten
        counts = collections.Counter(e for m in window for e in m["expressions"])
        print(f"faces now {message['faces']}; last {retention_s:.0f}s: {dict(counts.most_common(3))}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--socket", default="/run/edge-sdk/kiosk.sock")
    parser.add_argument("--retention", type=float, default=RETENTION_S, help="seconds kept in memory")
    args = parser.parse_args()
    serve(args.socket, args.retention)
