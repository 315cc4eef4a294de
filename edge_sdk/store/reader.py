"""Reading the log back with the key: decrypted records, and export to csv / jsonl / parquet.

Exports keep the pseudonyms. A key holder who knows a raw id can re-identify its rows with
``reveal={"patient": ["MRN123"]}``: the raw id is HMAC'd and matching pseudonyms are replaced by it
(raw ids are never stored, not even encrypted). An export is written to a new temporary 0600 file
(``O_EXCL|O_NOFOLLOW``: never through a planted link) and renamed only when complete, so a failure
(wrong key, altered row, full disk) leaves no partial plaintext behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edge_sdk.errors import EdgeSdkError, InputError
from edge_sdk.store.db import LogDatabase, StoredRow
from edge_sdk.store.records import is_alert_record
from edge_sdk.store.table import FaceIds, FaceTableSchema, frame_record_rows, record_schema, write_csv

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
ID_ROLES = ("patient", "session", "device")


class LogIntegrityError(EdgeSdkError):
    """A row could not be decrypted: the log was altered (run ``edge-sdk log verify``)."""


@dataclass(frozen=True)
class LogRecord:
    seq: int
    time: float
    kind: str
    session: str
    patient: str | None
    device: str | None
    record: dict[str, object]

    def flat(self) -> dict[str, object]:
        """One table row: identity columns then the record's fields, nested keys joined with dots."""
        out: dict[str, object] = {
            "seq": self.seq,
            "time": datetime.fromtimestamp(self.time, timezone.utc).isoformat(timespec="milliseconds"),
            "kind": self.kind,
            "session": self.session,
            "patient": self.patient,
            "device": self.device,
        }
        _flatten(self.record, "", out)
        return out


def _flatten(value: Mapping[str, object], prefix: str, out: dict[str, object]) -> None:
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping):
            _flatten(item, name + ".", out)
        elif isinstance(item, list):
            out[name] = json.dumps(item)
        else:
            out[name] = item


def parse_time(text: str, *, now: datetime | None = None) -> float:
    """``2024-05-01``, ``2024-05-01T08:00`` (UTC unless an offset is given), or relative ``90m``/``24h``/``7d``."""
    now = now or datetime.now(timezone.utc)
    match = _RELATIVE.match(text.strip())
    try:
        if match:
            return (now - timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])).timestamp()
        when = datetime.fromisoformat(text.strip())
        return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
    except OverflowError:
        raise InputError(f"time {text!r}: too far back (before the year 1); give a smaller age, e.g. 365d") from None
    except ValueError:
        raise InputError(
            f"time {text!r}: expected an ISO date/time (2024-05-01T08:00) or an age like 24h, 7d"
        ) from None


def _where(since: float | None, until: float | None, kinds: Iterable[str] | None, session: str | None):
    clauses, params = [], []
    if since is not None:
        clauses.append("ts >= ?")
        params.append(int(since))
    if until is not None:
        clauses.append("ts <= ?")
        params.append(int(until))
    if kinds:
        kinds = list(kinds)
        clauses.append(f"kind IN ({','.join('?' * len(kinds))})")
        params.extend(kinds)
    if session:
        clauses.append("session = ?")
        params.append(session)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def read_records(
    db: LogDatabase,
    *,
    since: float | None = None,
    until: float | None = None,
    kinds: Iterable[str] | None = None,
    session: str | None = None,
) -> Iterator[LogRecord]:
    """Decrypted records in row order; :class:`LogIntegrityError` at the first row that fails to decrypt.

    ``kinds`` ``alert`` also selects the alerts the runtime stores as ``event`` rows (``alert_raised``,
    ``alert_cleared``...: :data:`~edge_sdk.store.records.ALERT_EVENTS`) without the other events."""
    wanted = set(kinds) if kinds is not None else None
    stored = None if wanted is None else wanted | ({"event"} if "alert" in wanted else set())
    where, params = _where(since, until, stored, session)
    for row in db.rows(where, params):
        record = _decode(db, row)
        if wanted is None or record.kind in wanted or is_alert_record(record.kind, record.record):
            yield record


def _decode(db: LogDatabase, row: StoredRow) -> LogRecord:
    plaintext = db.sealer.open(row.meta, row.nonce, row.payload)
    if plaintext is None:
        raise LogIntegrityError(
            f"row {row.meta.seq} of {db.path} fails authentication (altered or moved); nothing more was decrypted - "
            "run `edge-sdk log verify`"
        )
    env = json.loads(plaintext)
    return LogRecord(
        row.meta.seq, float(env["t"]), row.meta.kind, row.meta.session, env.get("p"), env.get("d"), env["r"]
    )


def reveal_map(db: LogDatabase, reveal: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """pseudonym -> raw id for the raw ids a key holder names (``{"patient": ["MRN123"]}``)."""
    out: dict[str, str] = {}
    for role, raw_ids in reveal.items():
        if role not in ID_ROLES:
            raise InputError(f"--reveal {role}=...: the role must be one of {', '.join(ID_ROLES)}")
        for raw in raw_ids:
            out[db.sealer.ring.pseudonym(role, raw)] = raw
    return out


def _revealed(records: Iterable[LogRecord], names: Mapping[str, str]) -> Iterator[LogRecord]:
    for r in records:
        if names:
            r = LogRecord(
                r.seq,
                r.time,
                r.kind,
                names.get(r.session, r.session),
                names.get(r.patient, r.patient),
                names.get(r.device, r.device),
                r.record,
            )
        yield r


def _write_jsonl(records: Iterable[LogRecord], fh: io.TextIOBase) -> int:
    n = 0
    for r in records:
        head = {k: v for k, v in r.flat().items() if k in ("seq", "time", "kind", "session", "patient", "device")}
        fh.write(json.dumps({**head, "record": r.record}, separators=(",", ":")) + "\n")
        n += 1
    return n


def _write_csv(records: Iterable[LogRecord], fh: io.TextIOBase) -> int:
    rows = [r.flat() for r in records]  # columns are the union of all records' fields
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return len(rows)


def _column_type(values: list[object]):  # -> pyarrow.DataType
    """One Arrow type for a column's values: bool, int64, float64 (ints and floats), else string."""
    import pyarrow as pa

    kinds = {type(v) for v in values if v is not None}
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64()
    if kinds and kinds <= {int, float}:
        return pa.float64()
    return pa.string()


def _arrow_value(value: object, kind) -> object:  # kind: pyarrow.DataType
    import pyarrow as pa

    if value is None:
        return None
    if kind == pa.string() and not isinstance(value, str):
        return json.dumps(value)  # a column that mixes numbers and text (rare): keep it all as text
    return value


def _write_parquet(records: Iterable[LogRecord], path: Path) -> int:
    """Typed columns (events' fields are columns of their own): ``time`` a UTC timestamp, numbers int64 or
    float64, text and mixed columns strings (a list, e.g. a frame's ``faces``, as JSON text; use
    ``--table faces`` for a column per value)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for r in records:
        row = r.flat()
        row["time"] = datetime.fromtimestamp(r.time, timezone.utc)
        rows.append(row)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    arrays = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        kind = pa.timestamp("ms", tz="UTC") if name == "time" else _column_type(values)
        arrays[name] = pa.array([_arrow_value(v, kind) for v in values] if name != "time" else values, type=kind)
    pq.write_table(pa.table(arrays), path)
    return len(rows)


def face_table(records: Iterable[LogRecord]) -> tuple[list[dict[str, object]], FaceTableSchema]:
    """The per-face table (:mod:`edge_sdk.store.table`, as ``edge-sdk analyze`` writes it) of the frame
    records: ``file`` is the session, ``time`` the wall-clock capture time, ``timestamp`` the media time for a
    file session (else seconds since the session's first frame), face ids tracked per session; the pain
    columns come from the frame records."""
    rows: list[dict[str, object]] = []
    schema = FaceTableSchema(pain=True, wall_time=True)
    seen: set[tuple[tuple[str, tuple[str, ...]], ...]] = set()
    ids: dict[str, FaceIds] = {}
    first: dict[str, float] = {}
    for r in records:
        if r.kind != "frame":
            continue
        faces = r.record.get("faces")
        for face in faces if isinstance(faces, list) else ():
            if isinstance(face, Mapping):
                key = tuple(sorted((k, tuple(v)) for k, v in face.items() if isinstance(v, Mapping)))
                if key not in seen:
                    seen.add(key)
                    schema = schema.merged(record_schema(face, pain=True, wall_time=True))
        media = r.record.get("media_time")
        start = first.setdefault(r.session, r.time)
        timestamp = float(media) if isinstance(media, (int, float)) else r.time - start
        when = datetime.fromtimestamp(r.time, timezone.utc).isoformat(timespec="milliseconds")
        session_ids = ids.setdefault(r.session, FaceIds())
        rows += [{"time": when, **row} for row in frame_record_rows(r.session, r.record, timestamp, session_ids)]
    return rows, schema


EXPORT_FORMATS = ("csv", "jsonl", "parquet")


def check_output_path(out: Path, flag: str = "--out") -> None:
    """Refuse, before anything is decrypted, an output path that cannot become a new file."""
    if out.is_dir():
        raise InputError(f"{flag} {out} is a directory; give a file name")
    parent = out.parent
    if not parent.is_dir():
        raise InputError(f"{flag} {out}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {out}: the directory {parent} is not writable")


def _new_private_file(out: Path) -> tuple[int, Path]:
    """A new 0600 temporary file beside ``out`` (``O_EXCL|O_NOFOLLOW``); its descriptor and path."""
    tmp = out.with_name(f".{out.name}.{os.urandom(4).hex()}.partial")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    return os.open(tmp, flags, 0o600), tmp


EXPORT_TABLES = ("records", "faces")


def _write_faces_csv(records: Iterable[LogRecord], fh: io.TextIOBase) -> int:
    rows, schema = face_table(records)
    return write_csv(rows, schema, fh)  # type: ignore[arg-type]


def _write_faces_parquet(records: Iterable[LogRecord], path: Path) -> int:
    from edge_sdk.store.table import write_parquet

    rows, schema = face_table(records)
    return write_parquet(rows, schema, path)


def export_records(
    records: Iterable[LogRecord],
    fmt: str,
    out: Path | None,
    reveal: Mapping[str, str] | None = None,
    table: str = "records",
) -> int:
    """Write ``records`` as ``fmt`` to ``out`` (None = stdout; not for parquet); returns the row count.

    ``table`` ``records``: one row per record (frames and events, nested fields as dotted columns);
    ``faces``: one row per face per frame (:func:`face_table`, csv or parquet)."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"--format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    if table not in EXPORT_TABLES:
        raise InputError(f"--table {table!r}: expected one of {', '.join(EXPORT_TABLES)}")
    if table == "faces" and fmt == "jsonl":
        raise InputError("--table faces is a table: use --format csv or parquet")
    records = _revealed(records, reveal or {})
    write_text = {"csv": _write_csv, "jsonl": _write_jsonl}
    write_file = _write_parquet
    if table == "faces":
        write_text, write_file = {"csv": _write_faces_csv}, _write_faces_parquet
    if out is None:
        if fmt == "parquet":
            raise InputError("--format parquet needs --out FILE")
        records = list(records)  # decrypt everything before printing anything
        return write_text[fmt](records, sys.stdout)
    if fmt == "parquet":  # fail before decrypting anything when pyarrow is missing
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise EdgeSdkError(
                "--format parquet needs pyarrow, which is not installed (pip install pyarrow); "
                "csv and jsonl need nothing extra"
            ) from None
    tmp: Path | None = None
    try:
        fd, tmp = _new_private_file(out)
        if fmt == "parquet":
            os.close(fd)
            count = write_file(records, tmp)
        else:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                count = write_text[fmt](records, fh)
        os.replace(tmp, out)
        return count
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise EdgeSdkError(f"--out {out}: cannot write the export ({reason}); nothing was written") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
