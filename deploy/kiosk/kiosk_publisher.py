"""Kiosk example: run the pipeline in-process and publish a minimal, anonymous summary per frame.

The callback API (``build_pipeline(config, on_result=...)``) hands every FrameResult to
:func:`summarise`, which keeps only counts and averages (no images, no face crops, no ids) and sends
them as one JSON datagram to a local Unix socket. Nothing is written to disk. Pair with consumer.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import time
from typing import Any

from edge_sdk import build_pipeline
from edge_sdk.pipeline.config import build_config, load_toml

SOCKET_PATH = "/run/edge-sdk/kiosk.sock"


def summarise(result: Any) -> dict[str, Any]:
    """Anonymous per-frame summary: how many faces, top expression per face, mean valence/arousal."""
    faces = list(result.faces)
    expressions = []
    valence, arousal = [], []
    for face in faces:
        probs = face.expression
        if probs:
            expressions.append(max(probs, key=probs.get))
        va = face.valence_arousal
        if va:
            valence.append(va["valence"])
            arousal.append(va["arousal"])
    return {
        "t": round(time.time(), 2),
        "faces": len(faces),
        "expressions": sorted(expressions),
        "valence": round(sum(valence) / len(valence), 3) if valence else None,
        "arousal": round(sum(arousal) / len(arousal), 3) if arousal else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--socket", default=SOCKET_PATH)
    args = parser.parse_args()
    config = build_config(load_toml(args.config))
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def publish(result: Any) -> None:
        with contextlib.suppress(OSError):  # no consumer listening: drop the summary, never buffer it
            sender.sendto(json.dumps(summarise(result)).encode(), args.socket)

    pipeline, capture = build_pipeline(config, on_result=publish)
    pipeline.run(capture)


if __name__ == "__main__":
    main()
