"""Issue #15 item 6: every bad input ends in one ``error: ...`` line naming the file or key, exit 2 (or the
documented code), and never a traceback. Each case runs the real CLI in a subprocess.

Cases: config values out of range (``quota_mb = inf``, ``reconnect_initial_s = inf``, ``raise_after_s = inf``,
``retention_days = 1e300``, flags), config files that are not UTF-8, a directory, unreadable, a symlink loop;
corrupt model bytes (a graph name and the embedded card); a sidecar card whose size/layout/dtype disagrees
with the model; ``clamp: [5, 0]``; ``--source picamera2:x``; a read-only or unwritable ``--log-dir`` for the
JSON-lines log; ``benchmark --target openvino`` and ``export`` on the base install; a stdout reader that
goes away (``| head -1``: exit 141, quiet).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_sdk.assembly import build_pipeline
from edge_sdk.contract.ranges import Range
from edge_sdk.errors import InputError
from edge_sdk.model import load_card, sidecar_path
from edge_sdk.model.face_model import DEMO_MODEL
from edge_sdk.pipeline.alerts import PainSettings
from edge_sdk.pipeline.config import OPTIONS, CaptureSettings, DetectorSettings, LogSettings, RunConfig
from edge_sdk.pipeline.result import FrameResult
from edge_sdk.pipeline.sinks import JsonLinesSink
from edge_sdk.privacy import EXCLUDED_FIELDS
from edge_sdk.store import EncryptedLogSink
from edge_sdk.store.db import LogDatabase
from edge_sdk.store.keys import read_key_file
from edge_sdk.store.reader import read_records
from edge_sdk.store.records import DEFAULT_EXCLUDED_FIELDS
from edge_sdk_export.artifacts import write_sidecar
from tests.conftest import REPO
from tests.runtime_fixtures import face_file, yunet_path
from tests.store_helpers import write_log
from tests.test_base_install import base_venv, run_in  # noqa: F401 - base_venv is a fixture used below

EXIT_BROKEN_PIPE = 141
# Root reads and writes through any mode bits: run those cases without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH.
SETPRIV = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def cli(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "edge_sdk", *args], capture_output=True, text=True, cwd=REPO, timeout=180
    )


def assert_one_error(result: subprocess.CompletedProcess[str], *texts: str, code: int = 2) -> str:
    """Exit ``code``, no traceback, exactly one ``error:`` line on stderr and it contains every text."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert len(errors) == 1, result.stderr[-3000:]
    assert all(text in errors[0] for text in texts), (texts, errors[0])
    return errors[0]


def no_dac_override() -> tuple[str, ...]:
    """The command prefix that makes mode bits bind (empty when not root)."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: mode bits cannot be made to bind")
    return tuple(SETPRIV)


# ---- configuration ------------------------------------------------------------------------------------
def _toml(text: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "edge-sdk.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return make


def _not_utf8(folder: Path) -> Path:
    path = folder / "latin1.toml"
    path.write_bytes('model = "démo"\n'.encode("latin-1"))
    return path


def _directory(folder: Path) -> Path:
    path = folder / "conf.toml"
    path.mkdir()
    return path


def _symlink_loop(folder: Path) -> Path:
    path = folder / "loop.toml"
    path.symlink_to(path.name)
    return path


def _socket(folder: Path) -> Path:
    path = folder / "sock.toml"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
    return path


# name -> (make the --config file, text the error line holds besides the file name)
BAD_CONFIGS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "quota_mb = inf": (_toml("[log]\nquota_mb = inf\n"), "key 'log.quota_mb' = inf: must be > 0"),
    "quota_mb = nan": (_toml("[log]\nquota_mb = nan\n"), "key 'log.quota_mb' = nan"),
    "retention_days = inf": (_toml("[log]\nretention_days = inf\n"), "key 'log.retention_days' = inf"),
    "retention_days = 1e300": (_toml("[log]\nretention_days = 1e300\n"), "key 'log.retention_days' = 1e+300"),
    "reconnect_initial_s = inf": (
        _toml("[capture]\nreconnect_initial_s = inf\n"),
        "key 'capture.reconnect_initial_s' = inf",
    ),
    "reconnect_initial_s above reconnect_max_s": (
        _toml("[capture]\nreconnect_initial_s = 9\nreconnect_max_s = 2\n"),
        "key 'capture.reconnect_initial_s' = 9 must not exceed key 'capture.reconnect_max_s' = 2",
    ),
    "raise_after_s = inf": (_toml("[pain]\nraise_after_s = inf\n"), "key 'pain.raise_after_s' = inf: must be >= 0"),
    "face_lost_after_s = 1e9": (_toml("[pain]\nface_lost_after_s = 1e9\n"), "key 'pain.face_lost_after_s'"),
    "threshold = -inf": (_toml("[pain]\nthreshold = -inf\n"), "key 'pain.threshold' = -inf"),
    "watchdog_s = 0": (_toml("watchdog_s = 0\n"), "key 'watchdog_s' = 0: must be > 0"),
    "threads = 100000": (_toml("threads = 100000\n"), "key 'threads' = 100000: must be an integer >= 1"),
    "not UTF-8": (_not_utf8, "not UTF-8 text (byte 0xe9 at offset 10)"),
    "a directory": (_directory, "cannot read it (Is a directory)"),
    "a symlink loop": (_symlink_loop, "cannot read it (Too many levels of symbolic links)"),
    "a socket": (_socket, "cannot read it"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_file(case: str, tmp_path: Path) -> None:
    make, text = BAD_CONFIGS[case]
    path = make(tmp_path)
    assert_one_error(cli("run", "--config", str(path), "--source", "0"), str(path), text)


def test_unreadable_config_file(tmp_path: Path) -> None:
    path = _toml('model = "demo"\n')(tmp_path)
    path.chmod(0)
    result = cli("run", "--config", str(path), "--source", "0", prefix=no_dac_override())
    assert_one_error(result, f"--config {path}: cannot read it (Permission denied)")


@pytest.mark.parametrize(
    ("flag", "value", "key"),
    [
        ("--max-fps", "inf", "max_fps"),
        ("--status-every", "nan", "status_every_s"),
        ("--detect-scale", "inf", "detector.scale"),
    ],
)
def test_out_of_range_flag(flag: str, value: str, key: str) -> None:
    assert_one_error(cli("run", flag, value, "--source", "0"), f"command line: key '{key}' = {value}")


def test_every_numeric_key_has_a_finite_range() -> None:
    """One kind of range per number: a key added without one (or with an unbounded check) fails here."""
    numeric = {key: o for key, o in OPTIONS.items() if int in o.types or float in o.types}
    assert numeric and all(isinstance(o.check, Range) for o in numeric.values()), [
        key for key, o in numeric.items() if not isinstance(o.check, Range)
    ]
    for key, option in numeric.items():
        assert option.check(float("inf")) and option.check(float("nan")), key


SETTINGS_IN_CODE: dict[str, tuple[Callable[[], object], str]] = {
    "LogSettings(retention_days=inf)": (
        lambda: LogSettings(retention_days=float("inf")),
        "LogSettings: key 'log.retention_days' = inf",
    ),
    "LogSettings(quota_bytes=10**30)": (lambda: LogSettings(quota_bytes=10**30), "LogSettings: key 'log.quota_mb'"),
    "RunConfig(pain=PainSettings(raise_after_s=inf))": (
        lambda: RunConfig(pain=PainSettings(raise_after_s=float("inf"))),
        "RunConfig: key 'pain.raise_after_s' = inf",
    ),
    "CaptureSettings(reconnect_initial_s=inf)": (
        lambda: CaptureSettings(reconnect_initial_s=float("inf")),
        "CaptureSettings: key 'capture.reconnect_initial_s' = inf",
    ),
}


@pytest.mark.parametrize("case", list(SETTINGS_IN_CODE))
def test_settings_built_in_code_are_checked_too(case: str) -> None:
    """A kiosk app's ``build_pipeline(RunConfig(...))`` and ``EncryptedLogSink.open(dir, LogSettings(...))``
    get the same ranges as the file."""
    build, text = SETTINGS_IN_CODE[case]
    with pytest.raises(InputError) as err:
        build()
    assert str(err.value).startswith(text), str(err.value)


def test_small_quota_in_bytes_is_still_accepted_in_code() -> None:
    assert LogSettings(quota_bytes=100 * 1024).quota_bytes == 100 * 1024  # 0.1 MiB: a test log's quota


# ---- model files and cards ----------------------------------------------------------------------------
def _corrupt_graph_name(folder: Path) -> Path:
    """A symbolic axis name ('batch') with an invalid UTF-8 byte: ONNX Runtime loads it and raises
    UnicodeDecodeError only when the shapes are read. The card of the copy has no weights hash (as cards
    written before the field), or the hash check would refuse the file before ONNX Runtime sees it."""
    from tests.test_model_faults import without_weights_hash

    data = bytearray(without_weights_hash(DEMO_MODEL, folder / "no_hash.onnx").read_bytes())
    data[data.rindex(b"\x12\x05batch") + 2] = 0xE3
    path = folder / "corrupt_graph.onnx"
    path.write_bytes(bytes(data))
    return path


def _corrupt_hashed_graph_name(folder: Path) -> Path:
    data = bytearray(DEMO_MODEL.read_bytes())  # the shipped demo's card records its weights hash
    data[data.rindex(b"\x12\x05batch") + 2] = 0xE3
    path = folder / "corrupt_hashed_graph.onnx"
    path.write_bytes(bytes(data))
    return path


def _corrupt_card_bytes(folder: Path) -> Path:
    data = bytearray(DEMO_MODEL.read_bytes())
    data[data.index(b'"synthetic_demo"') + 1] = 0xFF
    path = folder / "corrupt_card.onnx"
    path.write_bytes(bytes(data))
    return path


def _sidecar_edit(name: str, **fields: object) -> Callable[[Path], Path]:
    """The demo ONNX with a hash-correct sidecar whose ``input`` section says ``fields``."""

    def make(folder: Path) -> Path:
        path = folder / f"{name}.onnx"
        path.write_bytes(DEMO_MODEL.read_bytes())
        write_sidecar(load_card(DEMO_MODEL), [path])
        card = json.loads(sidecar_path(path).read_text())
        card["input"].update(fields)
        sidecar_path(path).write_text(json.dumps(card))
        return path

    return make


# name -> (make the model, text in the error of `predict`)
BAD_MODELS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "corrupt graph name": (_corrupt_graph_name, "not a readable ONNX model"),
    "corrupt graph name, card with a weights hash": (_corrupt_hashed_graph_name, "weights changed since export"),
    "corrupt card bytes": (_corrupt_card_bytes, "not a readable ONNX model"),
    "sidecar size 64x64 on a 112x112 model": (
        _sidecar_edit("size", size=[64, 64]),
        "model card field 'input.size': card says NCHW [3, 64, 64] (size 64x64), the .onnx input is [?, 3, 112, 112]",
    ),
    "sidecar layout NHWC on an NCHW model": (_sidecar_edit("layout", layout="NHWC"), "'input.layout'"),
    "sidecar dtype uint8 on a float model": (
        _sidecar_edit("dtype", dtype="uint8", scale=0.02, zero_point=128),
        "'input.dtype': card says uint8, the .onnx input is float32",
    ),
}


@pytest.mark.parametrize("command", ["predict", "card"])
@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_bad_model_at_load(case: str, command: str, tmp_path: Path) -> None:
    """`predict` fails loading it; `card MODEL` (which loads the model for its forward pass) no longer says valid."""
    make, text = BAD_MODELS[case]
    path = make(tmp_path)
    args = ["--model", str(path), str(face_file("single_face.jpg"))] if command == "predict" else [str(path)]
    assert_one_error(cli(command, *args), str(path), text)


def test_card_with_a_reversed_clamp(tmp_path: Path) -> None:
    card = json.loads(load_card(DEMO_MODEL).to_json())
    index = next(i for i, h in enumerate(card["heads"]) if h["activation"] == "clamp")
    card["heads"][index]["clamp"] = [5, 0]
    path = tmp_path / "reversed.card.json"
    path.write_text(json.dumps(card))
    assert_one_error(cli("card", str(path)), str(path), f"heads[{index}] (au_intensity).clamp", "low < high")


# ---- sources and logs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["picamera2:x", "picamera2:", "picamera2:-1"])
def test_bad_picamera2_source(source: str) -> None:
    result = cli("run", "--model", "demo", "--source", source, "--detector-model", str(yunet_path()))
    assert_one_error(result, f"--source {source}: expected picamera2 or picamera2:N")


def _run_jsonl(log_dir: Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return cli(
        "run",
        "--model",
        "demo",
        "--source",
        str(face_file("single_face.jpg")),
        "--detector-model",
        str(yunet_path()),
        "--log-format",
        "jsonl",
        "--log-dir",
        str(log_dir),
        prefix=prefix,
    )


def test_jsonl_log_dir_read_only(tmp_path: Path) -> None:
    log_dir = tmp_path / "ro"
    log_dir.mkdir(mode=0o555)
    assert_one_error(_run_jsonl(log_dir, no_dac_override()), str(log_dir))
    assert not list(log_dir.iterdir())


def test_jsonl_log_dir_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("x")
    log_dir = tmp_path / "plain-file" / "log"
    assert_one_error(_run_jsonl(log_dir), str(log_dir))


def test_jsonl_sink_names_the_folder_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(InputError, match=f"log dir {tmp_path / 'plain-file'}: cannot write the result log"):
        JsonLinesSink(tmp_path / "plain-file" / "run.jsonl")


def test_jsonl_sink_disk_full_is_a_counted_fault_not_a_crash() -> None:
    sink = JsonLinesSink("/dev/full")  # every write fails with ENOSPC once it reaches the device
    sink.write({"event": "run_started", "timestamp": 1.0}, kind="event")
    sink.write({"frame": 0, "timestamp": 1.0})
    sink.flush()
    sink.close()
    health = sink.health()
    assert not health.ok and "No space left on device" in health.problem and health.dropped == 2, health
    assert sink.records == 0  # both rows lost, both counted


def test_jsonl_sink_on_a_full_disk_counts_every_lost_row() -> None:
    """Not just the rows of the write that happened to flush a buffer: 500 rows lost, 500 dropped."""
    sink = JsonLinesSink("/dev/full")
    for i in range(500):
        sink.write({"frame": i, "timestamp": float(i)})
    sink.flush()
    sink.close()
    health = sink.health()
    assert (sink.records, health.dropped) == (0, 500), health
    assert not health.ok and "500 rows dropped" in health.problem


def test_jsonl_log_is_private_and_holds_what_the_encrypted_log_holds(tmp_path: Path) -> None:
    """The same records through both sinks: the JSON-lines file is 0600 and, line for line, equals the
    decrypted rows (no landmarks; NaN as null), with only the row kind added."""
    cfg = RunConfig(source=str(face_file("single_face.jpg")), detector=DetectorSettings(model=str(yunet_path())))
    results: list[FrameResult] = []
    pipeline, capture = build_pipeline(cfg, on_result=results.append)
    pipeline.run(capture)
    frame = results[0].to_record()
    assert "landmarks" in frame["faces"][0], "the frame record must carry landmarks for this test to mean anything"
    records = [
        ("frame", frame),
        ("event", {"event": "face_found", "timestamp": 2.0, "pspi": float("nan")}),
        ("alert", {"event": "alert_raised", "timestamp": 3.0, "pspi": float("inf")}),
    ]
    jsonl = JsonLinesSink(tmp_path / "plain" / "run.jsonl")
    encrypted = EncryptedLogSink.open(tmp_path / "enc", LogSettings(key_file=str(tmp_path / "k.json")))
    for kind, record in records:
        for sink in (jsonl, encrypted):
            sink.write(record, kind=kind, timestamp=record["timestamp"])
    jsonl.close()
    encrypted.close()

    assert stat.S_IMODE(jsonl.path.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in jsonl.path.read_text().splitlines()]
    db = LogDatabase.open(tmp_path / "enc", read_key_file(tmp_path / "k.json"))
    ours = {record["timestamp"] for _, record in records}  # (the store adds session events of its own)
    stored = [(r.kind, r.record) for r in read_records(db) if r.record.get("timestamp") in ours]
    assert [(line.pop("kind"), line) for line in lines] == stored
    assert "landmarks" not in jsonl.path.read_text() and DEFAULT_EXCLUDED_FIELDS is EXCLUDED_FIELDS


# ---- a stdout reader that goes away -------------------------------------------------------------------
def test_log_export_into_head(tmp_path: Path) -> None:
    """`edge-sdk log export ... | head -1` through a real shell pipe: one row, then a quiet exit 141."""
    log_dir, key_file = write_log(tmp_path, n=3000)  # ~300 KB of jsonl: far more than a pipe buffers
    command = [sys.executable, "-m", "edge_sdk", "log", "export", "--log-dir", str(log_dir)]
    command += ["--key-file", str(key_file), "--format", "jsonl"]
    script = f'{" ".join(command)} 2>"$1" | head -1; echo "exit=${{PIPESTATUS[0]}}"'
    stderr = tmp_path / "stderr.txt"
    done = subprocess.run(["bash", "-c", script, "bash", str(stderr)], capture_output=True, text=True, cwd=REPO)
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) and lines[1] == f"exit={EXIT_BROKEN_PIPE}", done.stdout[-2000:]
    assert stderr.read_text() == "", stderr.read_text()[-3000:]


@pytest.mark.parametrize("args", [("card", "demo"), ("models", "list")])  # (argparse's --help swallows it itself)
def test_closed_stdout_is_a_quiet_exit(args: tuple[str, ...]) -> None:
    """The reader is gone before the first write: no traceback, no 'Exception ignored' at exit."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "edge_sdk", *args], stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=REPO
        )
    finally:
        os.close(write_end)
    assert done.returncode == EXIT_BROKEN_PIPE and done.stderr == "", (done.returncode, done.stderr[-3000:])


# ---- the base install (no openvino, no torch) ---------------------------------------------------------
def test_base_install_benchmark_openvino_names_the_extra(base_venv: Path) -> None:  # noqa: F811
    result = run_in(base_venv, "edge-sdk", "benchmark", "--target", "openvino", "--runs", "1", "--warmup", "0")
    assert_one_error(result, "backend 'openvino' needs the openvino package", "pip install 'edge-sdk[openvino]'")


def test_base_install_export_names_the_extra(base_venv: Path, tmp_path: Path) -> None:  # noqa: F811
    result = run_in(
        base_venv, "edge-sdk", "export", "--model", "demo", "--calib", "synthetic", "--out", str(tmp_path / "out")
    )
    # The first workstation package the export imports is named (onnx or torch: both come with the extra).
    assert_one_error(result, "this command needs the '", "pip install 'edge-sdk[export]'")
