"""Keys: created 0600 on first use, env var and key command, rotation, wrong/missing key errors, pseudonyms."""

from __future__ import annotations

import shlex
import sys

import pytest

from edge_sdk.cli import main
from edge_sdk.pipeline.config import LogSettings
from edge_sdk.store import EncryptedLogSink, KeyRing, KeySource, LogKeyError
from edge_sdk.store.db import LogDatabase, log_path
from edge_sdk.store.keys import KEY_ENV, read_key_file, write_key_file
from edge_sdk.store.reader import read_records
from edge_sdk.store.verify import verify_log
from tests.store_helpers import open_db, write_log


def test_key_file_is_created_0600_on_first_write(tmp_path):
    key_file = tmp_path / "keys" / "ring.json"
    sink = EncryptedLogSink.open(tmp_path / "log", LogSettings(key_file=str(key_file)))
    sink.close()
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    assert log_path(tmp_path / "log").stat().st_mode & 0o777 == 0o600


def test_group_readable_key_file_is_refused(tmp_path):
    key_file = tmp_path / "ring.json"
    write_key_file(key_file, KeyRing.generate())
    key_file.chmod(0o644)
    with pytest.raises(LogKeyError, match="chmod 600"):
        read_key_file(key_file)


def test_no_key_is_a_clear_error_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert main(["log", "verify", "--log-dir", str(tmp_path / "log")]) == 2
    assert "no log key" in capsys.readouterr().err
    monkeypatch.setenv(KEY_ENV, "not-a-key")
    with pytest.raises(LogKeyError, match="32-byte key"):
        EncryptedLogSink.open(tmp_path / "log", LogSettings())
    assert not (tmp_path / "log").exists()


def test_env_master_key_and_key_command(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "11" * 32)
    sink = EncryptedLogSink.open(tmp_path / "log", LogSettings(patient_id="MRN-1"))
    sink.write({"pspi": 1.0})
    sink.close()
    ring_file = tmp_path / "master.txt"
    ring_file.write_text("11" * 32)
    command = f"{shlex.quote(sys.executable)} -c 'import sys; sys.stdout.write(open(sys.argv[1]).read())' {ring_file}"
    monkeypatch.delenv(KEY_ENV)
    db = LogDatabase.open(tmp_path / "log", KeySource(key_command=command).load())
    assert [r.record for r in read_records(db, kinds=["frame"])] == [{"pspi": 1.0}]
    db.close()
    with pytest.raises(LogKeyError, match="exited with 3"):
        KeySource(key_command=f"{shlex.quote(sys.executable)} -c 'raise SystemExit(3)'").load()


def test_rotation_keeps_old_rows_readable(tmp_path):
    log_dir, key_file = write_log(tmp_path, n=5)
    old_ring = read_key_file(key_file)
    assert main(["log", "rotate-key", "--key-file", str(key_file)]) == 0
    new_ring = read_key_file(key_file)
    assert new_ring.active != old_ring.active and set(old_ring.keys) < set(new_ring.keys)
    sink = EncryptedLogSink.open(log_dir, LogSettings(key_file=str(key_file), retention_days=None))
    sink.write({"i": 99})
    sink.close()
    db = open_db(log_dir, key_file)
    assert verify_log(db).ok
    key_ids = {row.meta.key_id for row in db.rows()}
    assert key_ids == {old_ring.active, new_ring.active}
    assert [r.record["i"] for r in read_records(db, kinds=["frame"])] == [0, 1, 2, 3, 4, 99]
    db.close()
    db = LogDatabase.open(log_dir, old_ring)  # a ring without the new key: a clear error at the first new row
    with pytest.raises(LogKeyError, match=f"key id '{new_ring.active}'"):
        list(read_records(db))
    db.close()


def test_same_key_id_with_different_key_is_refused(tmp_path):
    log_dir, key_file = write_log(tmp_path, n=2)
    ring = read_key_file(key_file)
    forged = KeyRing(ring.secret, {ring.active: b"\x00" * 32}, ring.active)
    with pytest.raises(LogKeyError, match="holds a different key"):
        LogDatabase.open(log_dir, forged)


def test_pseudonyms_are_keyed_stable_and_revealable(tmp_path, capsys):
    log_dir, key_file = write_log(tmp_path, n=2)
    raw = log_path(log_dir).read_bytes()
    assert b"MRN-0042" not in raw
    ring = read_key_file(key_file)
    pseudonym = ring.pseudonym("patient", "MRN-0042")
    assert pseudonym.startswith("p_") and len(pseudonym) == 34
    assert KeyRing.generate().pseudonym("patient", "MRN-0042") != pseudonym  # keyed, not a plain hash
    assert main(["log", "export", "--log-dir", str(log_dir), "--key-file", str(key_file), "--format", "jsonl"]) == 0
    out = capsys.readouterr().out
    assert pseudonym in out and "MRN-0042" not in out
    assert (
        main(
            [
                "log",
                "export",
                "--log-dir",
                str(log_dir),
                "--key-file",
                str(key_file),
                "--format",
                "jsonl",
                "--reveal",
                "patient=MRN-0042",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert '"patient":"MRN-0042"' in out and pseudonym not in out
