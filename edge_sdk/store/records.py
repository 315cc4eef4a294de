"""What a log row may contain: result records only, never image data.

The guarantee is structural. :func:`normalise_record` turns a record into plain JSON values and refuses
anything that could carry a picture: bytes-like objects of any size, arrays larger than
:data:`LIMITS.max_array`, strings longer than :data:`LIMITS.max_string`, deep nesting, and records whose
encoded size exceeds :data:`LIMITS.max_encoded`. Nothing else in ``edge_sdk.store`` writes payload bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from edge_sdk.errors import InputError
from edge_sdk.privacy import EXCLUDED_FIELDS

#: Row kinds callers may write, and the ones the store writes itself.
PUBLIC_KINDS: frozenset[str] = frozenset({"frame", "alert", "event"})
INTERNAL_KINDS: frozenset[str] = frozenset({"audit"})
ALL_KINDS: frozenset[str] = PUBLIC_KINDS | INTERNAL_KINDS
#: The runtime stores alerts as kind ``event`` with one of these ``event`` names (``alert`` rows are written
#: by callers that use that kind); ``log export --kind alert`` selects both.
ALERT_EVENTS: frozenset[str] = frozenset(
    {"alert_raised", "alert_cleared", "alert_interrupted", "alert_resumed", "alert_acknowledged"}
)


def is_alert_record(kind: str, record: Mapping[str, object]) -> bool:
    """An ``alert`` row, or an ``event`` row whose ``event`` is one of :data:`ALERT_EVENTS`."""
    return kind == "alert" or (kind == "event" and record.get("event") in ALERT_EVENTS)


@dataclass(frozen=True)
class RecordLimits:
    max_depth: int = 4
    max_keys: int = 64
    max_key: int = 64
    max_string: int = 256
    max_array: int = 136  # list/tuple/numpy-array elements (68 landmark pairs fit; a 12x12 crop does not)
    max_encoded: int = 8192  # bytes of the encoded JSON of one record


LIMITS = RecordLimits()
#: Upper bound of one sealed row's plaintext: the record plus its envelope (exact time, pseudonyms).
MAX_PAYLOAD_BYTES = LIMITS.max_encoded + 512

_SCALARS = (bool, int, float, str, type(None))
_BYTES_LIKE = (bytes, bytearray, memoryview)


def _reject(path: str, problem: str) -> InputError:
    return InputError(f"log record field '{path or '<record>'}': {problem} (the log stores results only, never images)")


def _value(value: object, path: str, depth: int, exclude: frozenset[str] = frozenset()) -> object:
    if isinstance(value, _BYTES_LIKE):
        raise _reject(path, f"{type(value).__name__} is not allowed")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        if len(value) > LIMITS.max_string:
            raise _reject(path, f"string of {len(value)} characters, at most {LIMITS.max_string}")
        return value
    if isinstance(value, _SCALARS):
        return value
    if type(value).__module__ == "numpy":
        size = getattr(value, "size", 1)
        if getattr(value, "dtype", None) is not None and value.dtype.kind not in "biuf":
            raise _reject(path, f"numpy dtype {value.dtype} is not allowed")
        if size > LIMITS.max_array or getattr(value, "ndim", 0) > 2:
            raise _reject(
                path, f"numpy array of shape {getattr(value, 'shape', '?')}, at most {LIMITS.max_array} values"
            )
        return _value(value.tolist(), path, depth, exclude)
    if depth >= LIMITS.max_depth:
        raise _reject(path, f"nested deeper than {LIMITS.max_depth}")
    if isinstance(value, Mapping):
        return _mapping(value, path, depth + 1, exclude)
    if isinstance(value, (list, tuple)):
        if len(value) > LIMITS.max_array:
            raise _reject(path, f"{len(value)} elements, at most {LIMITS.max_array}")
        return [_value(v, f"{path}[{i}]", depth + 1, exclude) for i, v in enumerate(value)]
    raise _reject(path, f"type {type(value).__name__} is not a number, label, list or mapping")


#: Fields dropped by default before sealing (data minimisation; the same list as the JSON-lines log's).
DEFAULT_EXCLUDED_FIELDS: frozenset[str] = EXCLUDED_FIELDS


def _mapping(record: Mapping, path: str, depth: int, exclude: frozenset[str] = frozenset()) -> dict[str, object]:
    if len(record) > LIMITS.max_keys:
        raise _reject(path, f"{len(record)} keys, at most {LIMITS.max_keys}")
    out: dict[str, object] = {}
    for key, value in record.items():
        if key in exclude:
            continue
        if not isinstance(key, str) or not key or len(key) > LIMITS.max_key:
            raise _reject(path, f"key {key!r} must be a string of 1-{LIMITS.max_key} characters")
        out[key] = _value(value, f"{path}.{key}" if path else key, depth, exclude)
    return out


def normalise_record(
    record: Mapping[str, object], exclude: frozenset[str] = DEFAULT_EXCLUDED_FIELDS
) -> dict[str, object]:
    """A JSON-safe copy of ``record`` without the ``exclude`` keys (at any depth).

    :class:`InputError` for anything that is not a small result record.
    """
    if not isinstance(record, Mapping):
        raise _reject("", f"a record must be a mapping, got {type(record).__name__}")
    normalised = _mapping(record, "", 0, exclude)
    size = len(json.dumps(normalised, separators=(",", ":"), allow_nan=False))
    if size > LIMITS.max_encoded:
        raise _reject("", f"{size} bytes encoded, at most {LIMITS.max_encoded}")
    return normalised


def encode_payload(payload: Mapping[str, object]) -> bytes:
    """Canonical compact JSON of a normalised payload, refused beyond :data:`LIMITS.max_encoded` bytes."""
    data = json.dumps(payload, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("utf-8")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise _reject("", f"{len(data)} bytes encoded, at most {MAX_PAYLOAD_BYTES}")
    return data


def check_kind(kind: str, *, internal: bool = False) -> str:
    allowed = ALL_KINDS if internal else PUBLIC_KINDS
    if kind not in allowed:
        raise InputError(f"log record kind {kind!r}: expected one of {sorted(allowed)}")
    return kind


def envelope(record: Mapping[str, object], ts: float, patient: str | None, device: str | None) -> bytes:
    """The sealed plaintext of one row: the normalised record, its exact time and the pseudonyms."""
    return encode_payload({"t": ts, "p": patient, "d": device, "r": record})
