"""``edge-sdk log``: the private result log - verify, export, summary, purge, and its keys.

``verify``, ``export`` and ``summary`` read the log read-only, in one snapshot (a log a writer is appending
to reads like a closed one), and never create anything. Every passing ``verify``, every ``export`` and
every ``purge`` appends an audit row to the log's own hash chain; a ``verify`` that finds the log altered
leaves the file untouched for forensics.

Exit codes: 0 fine; 1 the log is altered, damaged or has gaps (``verify``: FAILED; ``export``/``summary``:
the output was written but the log has gaps, see the ``warning:`` line; ``--allow-gaps`` makes that 0);
2 an error (one ``error: ...`` line naming the file, flag or key).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from edge_sdk.errors import InputError
from edge_sdk.store.db import LogDamagedError, LogDatabase, LogDatabaseError, log_path
from edge_sdk.store.keys import (
    KeyRing,
    KeySource,
    LogKeyError,
    default_key_file,
    read_key_file,
    replace_key_file,
    write_key_file,
)
from edge_sdk.store.reader import (
    EXPORT_FORMATS,
    EXPORT_TABLES,
    check_output_path,
    export_records,
    face_table,
    parse_time,
    read_records,
    reveal_map,
)
from edge_sdk.store.summary import choose_session, format_table, hourly_summary, plot_timeline
from edge_sdk.store.verify import VerifyReport, parse_head, scan_gaps, verify_log

LOG_DIR_ENV = "EDGE_SDK_LOG_DIR"


def default_log_dir() -> Path:
    return Path(os.environ.get(LOG_DIR_ENV) or Path.home() / ".local" / "share" / "edge-sdk" / "log")


def _common(p: argparse.ArgumentParser, *, key: bool = True) -> None:
    p.add_argument(
        "--log-dir", type=Path, default=None, help=f"the log directory (default ${LOG_DIR_ENV} or {default_log_dir()})"
    )
    if key:
        p.add_argument(
            "--key-file", type=Path, help=f"key-ring file (default $EDGE_SDK_LOG_KEY, then {default_key_file()})"
        )
        p.add_argument(
            "--key-command", help="a command whose stdout is the key ring or a 32-byte key (e.g. from a TPM/vault)"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="log_command", metavar="ACTION", required=True)
    p = sub.add_parser("verify", help="check the hash chain, every seal and the head; exit 1 if anything was altered")
    _common(p)
    p.add_argument("--expect-head", metavar="SEQ:HEX", help="a head printed by an earlier verify (catches rollback)")

    p = sub.add_parser("export", help="decrypt records to csv / jsonl / parquet (ids stay pseudonymous)")
    _common(p)
    p.add_argument("--format", choices=EXPORT_FORMATS, default="csv")
    p.add_argument("--out", type=Path, help="output file (mode 0600); default stdout (csv/jsonl only)")
    p.add_argument(
        "--table",
        choices=EXPORT_TABLES,
        default="records",
        help="records (default): one row per frame/event, wall-clock `time` and `media_time` columns; "
        "faces: one row per face per frame, the columns of `edge-sdk analyze` (csv/parquet)",
    )
    _filters(p)
    p.add_argument(
        "--reveal",
        action="append",
        default=[],
        metavar="ROLE=ID",
        help="key holder only: show this raw id (patient=MRN123, session=..., device=...) where it matches",
    )

    p = sub.add_parser("summary", help="per hour: frames, frames with a face, mean/max PSPI, alerts; --plot for a PNG")
    _common(p)
    _filters(p)
    p.add_argument(
        "--plot", type=Path, metavar="PNG", help="write a PSPI/alert timeline of one session (needs matplotlib)"
    )

    p = sub.add_parser("purge", help="delete the oldest rows (chain stays verifiable through a checkpoint)")
    _common(p)
    p.add_argument("--older-than", metavar="AGE", help="purge rows older than this (e.g. 30d, 12h) or an ISO time")
    p.add_argument("--max-bytes", type=int, help="purge oldest rows until the database uses at most this")

    p = sub.add_parser("init-key", help="create a new key-ring file (mode 0600)")
    p.add_argument("--key-file", type=Path, default=None, help=f"where (default {default_key_file()})")
    p = sub.add_parser("rotate-key", help="add a new active data key to a key-ring file; old keys stay for reading")
    p.add_argument("--key-file", type=Path, default=None, help=f"which (default {default_key_file()})")


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-gaps",
        action="store_true",
        help="exit 0 even when the log has gaps (deleted rows): the warning on stderr is still printed",
    )
    p.add_argument("--since", help="from this time: ISO (2024-05-01T08:00, UTC) or an age (24h, 7d)")
    p.add_argument("--until", help="up to this time (same forms)")
    p.add_argument("--session", help="only this session pseudonym (s_...)")
    p.add_argument(
        "--kind",
        action="append",
        choices=("frame", "alert", "event", "audit"),
        help="only these kinds (repeatable); alert: the alert events (alert_raised, alert_cleared, ...)",
    )


def _log_dir(args: argparse.Namespace) -> Path:
    return args.log_dir or default_log_dir()


def _open(args: argparse.Namespace, *, read_only: bool = True) -> LogDatabase:
    """The log, read-only unless a command changes it; nothing is ever created here."""
    ring = KeySource(key_file=args.key_file, key_command=args.key_command).load(create=False)
    return LogDatabase.open(_log_dir(args), ring, read_only=read_only)


def _audit(db: LogDatabase, action: str, details: dict[str, object]) -> None:
    """Append an audit row through a short read-write connection (readers hold a read-only one)."""
    try:
        writer = LogDatabase.open(db.path.parent, db.sealer.ring)
        try:
            writer.append_audit(action, details)
        finally:
            writer.close()
    except (sqlite3.Error, LogDatabaseError, OSError) as exc:
        print(f"warning: {db.path}: could not append the audit record ({exc})", file=sys.stderr)


def _time(text: str | None) -> float | None:
    return None if text is None else parse_time(text)


def _warn_gaps(db: LogDatabase, gaps: VerifyReport, what: str, allow: bool) -> int:
    """One ``warning:`` line when the chain has gaps; the exit code (1 unless ``--allow-gaps``)."""
    if gaps.ok:
        return 0
    print(
        f"warning: {db.path}: the log has gaps or was altered, so this {what} may be incomplete "
        f"({len(gaps.problems)} problem(s); first: {gaps.problems[0]}); run `edge-sdk log verify`",
        file=sys.stderr,
    )
    return 0 if allow else 1


def _verify(args: argparse.Namespace) -> int:
    if args.expect_head is not None:
        parse_head(args.expect_head)  # a malformed value is a usage error, before anything is read
    try:
        db = _open(args)
    except LogDamagedError as exc:  # the file is there but is no readable log: that is a failed verify
        print(f"log: {log_path(_log_dir(args))}")
        print(f"TAMPERED: {exc}")
        print(f"verify: FAILED (1 problem(s); first: {exc})")
        return 1
    try:
        report = verify_log(db, args.expect_head)
        _print_report(db, report)
        if report.ok:  # a failed log is left exactly as it was found
            _audit(db, "verify", {"ok": True, "problems": 0, "rows": report.rows})
        return 0 if report.ok else 1
    finally:
        db.close()


def _print_report(db: LogDatabase, report: VerifyReport) -> None:
    print(f"log: {db.path}")
    print(
        f"rows: {report.rows} (seq {report.first_seq}-{report.last_seq}), purge checkpoints: {report.checkpoints} "
        f"({report.purged_rows} rows purged)"
    )
    print(f"head: {report.head}")
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"TAMPERED: {problem}")
    if report.ok:
        print("verify: OK")
    else:
        print(f"verify: FAILED ({len(report.problems)} problem(s); first: {report.problems[0]})")


def _reveal(items: list[str]) -> dict[str, list[str]]:
    reveal: dict[str, list[str]] = {}
    for item in items:
        role, sep, raw = item.partition("=")
        if not sep or not raw:
            raise InputError(f"--reveal {item!r}: expected ROLE=ID, e.g. patient=MRN123")
        reveal.setdefault(role, []).append(raw)
    return reveal


def _export(args: argparse.Namespace) -> int:
    reveal = _reveal(args.reveal)
    since, until = _time(args.since), _time(args.until)
    if args.table == "faces" and args.format == "jsonl":
        raise InputError("--table faces is a table: use --format csv or parquet")
    if args.out is not None:
        check_output_path(args.out)
    elif args.format == "parquet":
        raise InputError("--format parquet needs --out FILE")
    db = _open(args)
    try:
        names = reveal_map(db, reveal)
        with db.snapshot():  # the gap check and the rows exported see the same state
            gaps = scan_gaps(db)
            kinds = ["frame"] if args.table == "faces" else _kinds(args)
            records = read_records(db, since=since, until=until, kinds=kinds, session=args.session)
            records = list(records) if args.out is None else records  # stdout: decrypt all before printing
            if args.out is not None:
                count = export_records(records, args.format, args.out, names, args.table)
            elif args.table == "faces":
                rows, _ = face_table(records)  # type: ignore[arg-type]
                count = len(rows)
            else:
                count = len(records)  # type: ignore[arg-type]
        _audit(db, "export", _export_details(args, count, len(names)))  # stdout: before the rows are handed out
        if args.out is None:
            export_records(records, args.format, None, names, args.table)
            sys.stdout.flush()  # a closed pipe (`| head`) raises here, inside the command
        print(f"exported {count} records as {args.format} to {args.out or 'stdout'}", file=sys.stderr)
        return _warn_gaps(db, gaps, "export", args.allow_gaps)
    finally:
        db.close()


def _kinds(args: argparse.Namespace | None) -> list[str]:
    return (args.kind if args is not None else None) or ["frame", "alert", "event"]  # audit rows only when asked


def _export_details(args: argparse.Namespace, count: int, revealed: int) -> dict[str, object]:
    """What the export audit row records (never the revealed ids themselves)."""
    return {
        "format": args.format,
        "table": args.table,
        "rows": count,
        "since": args.since,
        "until": args.until,
        "session": args.session,
        "revealed_ids": revealed,
        "to_stdout": args.out is None,
    }


def _summary(args: argparse.Namespace) -> int:
    since, until = _time(args.since), _time(args.until)
    if args.plot is not None:
        check_output_path(args.plot, "--plot")
    db = _open(args)
    try:
        with db.snapshot():
            gaps = scan_gaps(db)
            records = list(read_records(db, since=since, until=until, kinds=_kinds(args), session=args.session))
            plotted = records  # the plot needs the session's frames and events whatever --kind shows in the table
            if args.plot and args.kind:
                plotted = list(read_records(db, since=since, until=until, kinds=_kinds(None), session=args.session))
        print(format_table([h.as_row() for h in hourly_summary(records)]))
        sys.stdout.flush()
        if args.plot:
            session = args.session or choose_session(plotted)
            if session is None:
                raise InputError("nothing to plot: no frame records in range")
            frames = plot_timeline([r for r in plotted if r.session == session], args.plot, f"session {session}")
            print(f"timeline of session {session} ({frames} frames) written to {args.plot}")
        return _warn_gaps(db, gaps, "summary", args.allow_gaps)
    finally:
        db.close()


def _purge(args: argparse.Namespace) -> int:
    if args.older_than is None and args.max_bytes is None:
        raise InputError("purge needs --older-than AGE and/or --max-bytes N")
    if args.max_bytes is not None and args.max_bytes < 0:
        raise InputError(f"--max-bytes {args.max_bytes}: must be 0 or more")
    cutoff = None if args.older_than is None else parse_time(args.older_than)
    db = _open(args, read_only=False)
    try:
        purged = 0
        if cutoff is not None:
            purged += db.purge_older_than(cutoff, "manual retention")
        if args.max_bytes is not None:
            purged += db.purge_to_quota(args.max_bytes, "manual quota")
        print(f"purged {purged} rows from {db.path} (checkpointed; `edge-sdk log verify` still passes)")
        if not purged:
            _audit(db, "purge", {"rows": 0, "older_than": args.older_than, "max_bytes": args.max_bytes})
        return 0
    finally:
        db.close()


def _init_key(args: argparse.Namespace) -> int:
    path = args.key_file or default_key_file()
    if path.exists():
        raise LogKeyError(f"key file {path} already exists; not overwriting it (rotate with `edge-sdk log rotate-key`)")
    write_key_file(path, KeyRing.generate(f"key file {path}"))  # O_EXCL|O_NOFOLLOW: never through a link
    print(f"created key ring {path} (mode 0600). Back it up: without it the log cannot be read.")
    return 0


def _rotate_key(args: argparse.Namespace) -> int:
    path = args.key_file or default_key_file()
    ring = read_key_file(path).rotated()
    replace_key_file(path, ring)
    print(f"{path}: new active key '{ring.active}'; {len(ring.keys) - 1} older key(s) kept for reading")
    return 0


ACTIONS: dict[str, Callable[[argparse.Namespace], int]] = {
    "verify": _verify,
    "export": _export,
    "summary": _summary,
    "purge": _purge,
    "init-key": _init_key,
    "rotate-key": _rotate_key,
}


def run(args: argparse.Namespace) -> int:
    try:
        return ACTIONS[args.log_command](args)
    except sqlite3.DatabaseError as exc:  # e.g. a malformed page met while reading: name the file, no traceback
        where = log_path(_log_dir(args)) if hasattr(args, "log_dir") else "the log"
        problem = f"cannot be read: it is damaged or locked (sqlite: {exc})"
        raise LogDatabaseError(f"log database {where} {problem}") from None
