"""Never a pixel: the API refuses image-like data, and the files hold no image or large opaque blob."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.errors import InputError
from edge_sdk.pipeline.config import LogSettings
from edge_sdk.store import EncryptedLogSink
from edge_sdk.store.db import log_path
from edge_sdk.store.records import MAX_PAYLOAD_BYTES, normalise_record
from edge_sdk.store.sealing import NONCE_BYTES, TAG_BYTES

IMAGE_SIGNATURES = {
    "png": b"\x89PNG\r\n\x1a\n",
    "jpeg": b"\xff\xd8\xff",
    "gif": b"GIF8",
    "webp": b"WEBP",
    "tiff": b"II*\x00",
    "npy": b"\x93NUMPY",
}
BLOCK = 64


@pytest.mark.parametrize(
    "record",
    [
        {"crop": b"\x89PNG\r\n\x1a\n" + bytes(100)},
        {"crop": bytearray(10)},
        {"crop": memoryview(b"abc")},
        {"crop": np.zeros((112, 112, 3), np.uint8)},
        {"crop": np.zeros(65 * 3, np.float32)},
        {"crop": np.zeros((2, 2, 2), np.float32)},
        {"crop": list(range(5000))},
        {"crop": "A" * 5000},
        {"a": {"b": {"c": {"d": {"e": [1]}}}}},
        {f"k{i}": i for i in range(100)},
        {"obj": object()},
        {1: "non-string key"},
        {"rows": [[0] * 100 for _ in range(100)]},
    ],
    ids=lambda r: next(iter(r)) if isinstance(r, dict) and r else "x",
)
def test_image_like_data_is_refused(record):
    with pytest.raises(InputError, match="results only, never images"):
        normalise_record(record)


def test_results_are_normalised():
    out = normalise_record(
        {
            "pspi": np.float32(2.5),
            "au": np.array([0.1, 0.2]),
            "va": (0.1, -0.2),
            "nan": float("nan"),
            "faces": [{"box": [1, 2, 3, 4], "landmarks": [[1, 2]] * 68}],
        }
    )
    assert out == {
        "pspi": 2.5,
        "au": [pytest.approx(0.1), pytest.approx(0.2)],
        "va": [0.1, -0.2],
        "nan": None,
        "faces": [{"box": [1, 2, 3, 4]}],
    }  # landmarks dropped: data minimisation


def _high_entropy_run(data: bytes) -> int:
    """Longest run of consecutive 64-byte blocks that look random (>= 40 distinct byte values), in bytes."""
    n = len(data) // BLOCK
    if n == 0:
        return 0
    blocks = np.sort(np.frombuffer(data[: n * BLOCK], np.uint8).reshape(n, BLOCK), axis=1)
    distinct = 1 + np.count_nonzero(np.diff(blocks, axis=1), axis=1)
    best = run = 0
    for hot in distinct >= 40:
        run = run + 1 if hot else 0
        best = max(best, run)
    return best * BLOCK


def _mask(data: bytes, known: list[bytes]) -> bytes:
    """Zero every occurrence of the expected ciphertexts (the WAL may hold several copies of a page)."""
    buf = bytearray(data)
    for blob in known:
        at = buf.find(blob)
        while at >= 0:
            buf[at : at + len(blob)] = bytes(len(blob))
            at = buf.find(blob, at + len(blob))
    return bytes(buf)


def _scan(path: Path, allowed_run: int, known: list[bytes] = ()) -> list[str]:
    # The sealed rows we wrote are ciphertext: random bytes that hold a 3-byte signature such as JPEG's by chance
    # (p ~ size / 2**24), so both checks look at what is left once those known ciphertexts are zeroed.
    data = _mask(path.read_bytes(), list(known))
    found = [f"{name} signature in {path.name}" for name, sig in IMAGE_SIGNATURES.items() if sig in data]
    run = _high_entropy_run(data)
    if run > allowed_run:
        found.append(f"{run}-byte high-entropy run in {path.name} (allowed {allowed_run})")
    return found


def test_database_and_wal_hold_no_image_or_large_blob(tmp_path):
    log_dir = tmp_path / "log"
    sink = EncryptedLogSink.open(
        log_dir, LogSettings(key_file=str(tmp_path / "k.json"), patient_id="MRN-77", retention_days=None)
    )
    for bad in (np.zeros((48, 48, 3), np.uint8), b"\xff\xd8\xff" + bytes(2000)):
        with pytest.raises(InputError):
            sink.write({"crop": bad})
    for i in range(800):
        sink.write(
            {
                "i": i,
                "pspi": (i % 160) / 10,
                "faces": [
                    {
                        "box": [10.0, 20.0, 90.0, 120.0],
                        "score": 0.98,
                        "au": {f"AU{k}": round(math.sin(i + k), 3) for k in range(12)},
                    }
                ],
                "state": "clear",
            }
        )
    assert sink.flush(10)
    db, wal = log_path(log_dir), Path(f"{log_path(log_dir)}-wal")
    assert wal.exists() and wal.stat().st_size > 0  # scan the WAL while the writer holds it
    with sqlite3.connect(db) as conn:
        payloads = [bytes(r[0]) for r in conn.execute("SELECT payload FROM records")]
    assert max(map(len, payloads)) <= MAX_PAYLOAD_BYTES + TAG_BYTES  # every sealed blob is small by construction
    # With the expected ciphertexts masked, what is left that looks random must be short: nonces, links,
    # key checks and page headers, never a blob. 4 blocks of slack for those neighbours.
    allowed = NONCE_BYTES + 32 + 4 * BLOCK
    problems = _scan(wal, allowed, payloads) + _scan(db, allowed, payloads)
    sink.close()
    problems += _scan(db, allowed, payloads)
    assert problems == []
    assert b"MRN-77" not in db.read_bytes()  # raw ids never stored


def test_scanner_catches_a_stored_image(tmp_path):
    """The detector can fail: a plain SQLite file holding an image blob is flagged."""
    path = tmp_path / "leak.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (b BLOB)")
        conn.execute("INSERT INTO t VALUES (?)", (IMAGE_SIGNATURES["png"] + np.random.default_rng(0).bytes(20000),))
    problems = _scan(path, allowed_run=2048)
    assert any("png" in p for p in problems) and any("high-entropy" in p for p in problems)
