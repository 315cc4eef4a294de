"""``edge-sdk log``: the private result log - verify, export, summary, purge, and its keys.

Every ``verify``, ``export`` and ``purge`` appends an audit row to the log's own hash chain.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from edge_sdk.errors import InputError
from edge_sdk.store.db import LogDatabase
from edge_sdk.store.keys import KeyRing, KeySource, LogKeyError, default_key_file, read_key_file, write_key_file
from edge_sdk.store.reader import EXPORT_FORMATS, export_records, parse_time, read_records, reveal_map
from edge_sdk.store.summary import format_table, hourly_summary, plot_timeline
from edge_sdk.store.verify import verify_log

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
    p.add_argument("--since", help="from this time: ISO (2024-05-01T08:00, UTC) or an age (24h, 7d)")
    p.add_argument("--until", help="up to this time (same forms)")
    p.add_argument("--session", help="only this session pseudonym (s_...)")
    p.add_argument("--kind", action="append", choices=("frame", "alert", "event", "audit"), help="only these kinds")


def _open(args: argparse.Namespace) -> LogDatabase:
    ring = KeySource(key_file=args.key_file, key_command=args.key_command).load(create=False)
    return LogDatabase.open(args.log_dir or default_log_dir(), ring)


def _audit(db: LogDatabase, action: str, details: dict[str, object]) -> None:
    try:
        db.append_audit(action, details)
    except sqlite3.Error as exc:
        print(f"warning: could not append the audit record ({exc})", file=sys.stderr)


def _time(text: str | None) -> float | None:
    return None if text is None else parse_time(text)


def _verify(args: argparse.Namespace) -> int:
    db = _open(args)
    try:
        report = verify_log(db, args.expect_head)
        print(f"log: {db.path}")
        print(
            f"rows: {report.rows} (seq {report.first_seq}-{report.last_seq}), purge checkpoints: {report.checkpoints} "
            f"({report.purged_rows} rows purged)"
        )
        print(f"head: {report.head}")
        for problem in report.problems:
            print(f"TAMPERED: {problem}")
        print(
            "verify: OK"
            if report.ok
            else f"verify: FAILED ({len(report.problems)} problem(s); first: {report.problems[0]})"
        )
        _audit(db, "verify", {"ok": report.ok, "problems": len(report.problems), "rows": report.rows})
        return 0 if report.ok else 1
    finally:
        db.close()


def _export(args: argparse.Namespace) -> int:
    db = _open(args)
    try:
        reveal: dict[str, list[str]] = {}
        for item in args.reveal:
            role, sep, raw = item.partition("=")
            if not sep or not raw:
                raise InputError(f"--reveal {item!r}: expected ROLE=ID, e.g. patient=MRN123")
            reveal.setdefault(role, []).append(raw)
        names = reveal_map(db, reveal)
        kinds = args.kind or ["frame", "alert", "event"]  # audit rows only when asked for
        records = read_records(db, since=_time(args.since), until=_time(args.until), kinds=kinds, session=args.session)
        count = export_records(records, args.format, args.out, names)
        where = str(args.out) if args.out else "stdout"
        print(f"exported {count} records as {args.format} to {where}", file=sys.stderr)
        _audit(
            db,
            "export",
            {
                "format": args.format,
                "rows": count,
                "since": args.since,
                "until": args.until,
                "session": args.session,
                "revealed_ids": len(names),
                "to_stdout": args.out is None,
            },
        )
        return 0
    finally:
        db.close()


def _summary(args: argparse.Namespace) -> int:
    db = _open(args)
    try:
        kinds = args.kind or ["frame", "alert", "event"]
        records = list(
            read_records(db, since=_time(args.since), until=_time(args.until), kinds=kinds, session=args.session)
        )
        print(format_table([h.as_row() for h in hourly_summary(records)]))
        if args.plot:
            sessions = [r.session for r in records if r.kind == "frame"]
            session = args.session or (sessions[-1] if sessions else None)
            if session is None:
                raise InputError("nothing to plot: no frame records in range")
            frames = plot_timeline([r for r in records if r.session == session], args.plot, f"session {session}")
            print(f"timeline of session {session} ({frames} frames) written to {args.plot}")
        return 0
    finally:
        db.close()


def _purge(args: argparse.Namespace) -> int:
    if args.older_than is None and args.max_bytes is None:
        raise InputError("purge needs --older-than AGE and/or --max-bytes N")
    db = _open(args)
    try:
        purged = 0
        if args.older_than is not None:
            purged += db.purge_older_than(parse_time(args.older_than), "manual retention")
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
    write_key_file(path, KeyRing.generate(f"key file {path}"))
    print(f"created key ring {path} (mode 0600). Back it up: without it the log cannot be read.")
    return 0


def _rotate_key(args: argparse.Namespace) -> int:
    path = args.key_file or default_key_file()
    ring = read_key_file(path).rotated()
    write_key_file(path, ring)
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
    return ACTIONS[args.log_command](args)
