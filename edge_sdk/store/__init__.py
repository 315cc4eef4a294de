"""The private, encrypted, tamper-evident result log (results only, never images).

Modules: ``keys`` (key ring, sources, rotation), ``records`` (what a row may contain), ``sealing``
(AES-256-GCM + HMAC chain), ``db`` (SQLite file, appends, purge checkpoints), ``writer`` (background
batched writer), ``sink`` (``EncryptedLogSink`` for the runtime loop), ``verify``, ``reader`` (decrypt,
export), ``summary`` (hourly summary, PNG timeline).
"""

from edge_sdk.store.db import LogDatabaseError, LogDiskFullError
from edge_sdk.store.keys import KeyRing, KeySource, LogKeyError
from edge_sdk.store.sink import EncryptedLogSink, PseudonymousIds
from edge_sdk.store.writer import CommitReport, LogTuning, WriterHealth

__all__ = [
    "CommitReport",
    "EncryptedLogSink",
    "KeyRing",
    "KeySource",
    "LogDatabaseError",
    "LogDiskFullError",
    "LogKeyError",
    "LogTuning",
    "PseudonymousIds",
    "WriterHealth",
]
