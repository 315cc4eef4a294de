"""``edge-sdk run`` settings: defaults < TOML file (``--config``) < command-line flags.

Every key is declared once in :data:`OPTIONS` with its type and allowed range; unknown keys and bad values
are rejected with the key named. The file is flat keys plus ``[capture]``, ``[detector]``, ``[pain]``, ``[log]``.
A key is the :class:`RunConfig` field it sets (``section.field`` for a section), except where the file is
written in a friendlier unit than the field: ``log.quota_mb`` (MiB) fills ``LogSettings.quota_bytes``, the
one conversion, made here. Command-line flags name the same keys (:mod:`edge_sdk.cli.flags`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_sdk.errors import InputError
from edge_sdk.face.detect import DETECTOR_KINDS
from edge_sdk.face.select import FACE_POLICIES
from edge_sdk.pipeline.alerts import SMOOTHERS, PainSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Option:
    """One config key: accepted Python types and an optional check returning a problem or None.

    ``field_name``/``convert``: for a key written in another unit than its dataclass field, the field it
    fills and the conversion into that field's unit (MiB -> bytes).
    """

    types: tuple[type, ...]
    check: Callable[[Any], str | None] | None = None
    help: str = ""
    field_name: str | None = None
    convert: Callable[[Any], Any] | None = None


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"expected one of {', '.join(choices)}"


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"expected a number in [{low:g}, {high:g}]"


MIB = 1024 * 1024


def _mib_to_bytes(mib: float) -> int:
    return int(mib * MIB)


NUM = (int, float)
LOG_FORMATS = ("encrypted", "jsonl")
OPTIONS: dict[str, Option] = {
    "model": Option((str,), help="'demo', a model path or a pulled model name"),
    "backend": Option((str,), help="force a backend (onnxruntime, litert, openvino)"),
    "threads": Option((int,), _positive, "inference threads"),
    "source": Option((str,), help="0 | /dev/video0 | picamera2 | rtsp://... | file.mp4 | folder/"),
    "max_fps": Option(NUM, _positive, "cap on processed frames per second"),
    "max_frames": Option((int,), _positive, "stop after this many frames"),
    "faces": Option((str,), _choice(FACE_POLICIES), "largest (the patient) or all"),
    "log_dir": Option((str,), help="folder for the private result log"),
    "status_every_s": Option(NUM, _non_negative, "status line period, 0 = off"),
    "watchdog_s": Option(NUM, _positive, "warn when one frame's processing takes longer than this"),
    "preview": Option((bool,), help="draw an overlay in a window (needs an OpenCV with GUI)"),
    "print_frames": Option((bool,), help="one stdout line per frame"),
    "capture.width": Option((int,), _positive),
    "capture.height": Option((int,), _positive),
    "capture.preview_width": Option((int,), _positive, "picamera2 main stream, for --preview"),
    "capture.preview_height": Option((int,), _positive),
    "capture.reconnect_initial_s": Option(NUM, _positive),
    "capture.reconnect_max_s": Option(NUM, _positive),
    "capture.queue_size": Option((int,), _positive, "frames decoded ahead for files (live sources keep 1)"),
    "detector.kind": Option((str,), _choice(DETECTOR_KINDS)),
    "detector.model": Option((str,), help="path to a YuNet .onnx"),
    "detector.score_threshold": Option(NUM, _between(0.0, 1.0)),
    "detector.scale": Option(NUM, _between(0.05, 1.0), "detect on a frame resized by this factor"),
    "detector.interval": Option((int,), _positive, "run the detector every N frames while a face is tracked"),
    "pain.threshold": Option(NUM, _between(0.0, 16.0)),
    "pain.clear_threshold": Option(NUM, _between(0.0, 16.0)),
    "pain.raise_after_s": Option(NUM, _non_negative),
    "pain.clear_after_s": Option(NUM, _non_negative),
    "pain.smoothing": Option((str,), _choice(tuple(SMOOTHERS))),
    "pain.window_s": Option(NUM, _non_negative),
    "pain.baseline_s": Option(NUM, _non_negative, "capture a neutral baseline for this long at start, 0 = off"),
    "pain.face_lost_after_s": Option(NUM, _non_negative),
    "log.format": Option((str,), _choice(LOG_FORMATS), "encrypted (the private log) or jsonl (plain text, bench only)"),
    "log.key_file": Option((str,), help="key ring file (created 0600 on first use)"),
    "log.key_command": Option((str,), help="command printing the key ring (e.g. from a TPM or secrets store)"),
    "log.patient_id": Option((str,), help="stored only as a keyed HMAC pseudonym"),
    "log.device_id": Option((str,), help="stored only as a keyed HMAC pseudonym"),
    "log.retention_days": Option(NUM, _positive, "purge records older than this"),
    "log.quota_mb": Option(
        NUM,
        _positive,
        "purge oldest records beyond this database size, in MiB",
        field_name="quota_bytes",
        convert=_mib_to_bytes,
    ),
}


@dataclass(frozen=True)
class CaptureSettings:
    """``[capture]``: camera size, reconnect back-off (seconds) and the decode-ahead queue of file sources."""

    width: int | None = None
    height: int | None = None
    preview_width: int | None = None
    preview_height: int | None = None
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 8.0
    queue_size: int = 4


@dataclass(frozen=True)
class DetectorSettings:
    """``[detector]``: which face detector, on what frame scale, how often."""

    kind: str = "auto"
    model: str | None = None
    score_threshold: float = 0.6
    scale: float = 0.5
    interval: int = 1


@dataclass(frozen=True)
class LogSettings:
    """``[log]``: the private result log; what ``EncryptedLogSink.open`` takes.

    The key ring comes from ``key_command``, else ``key_file``, else ``$EDGE_SDK_LOG_KEY`` or the default key
    file. Patient and device ids are stored only as keyed pseudonyms. Rows older than ``retention_days`` and
    the oldest rows beyond ``quota_bytes`` of database pages are purged; ``None`` turns that purge off (the
    TOML file writes the quota as ``quota_mb``, in MiB).
    """

    format: str = "encrypted"
    key_file: str | None = None
    key_command: str | None = None
    patient_id: str | None = None
    device_id: str | None = None
    retention_days: float | None = 30.0
    quota_bytes: int | None = 512 * MIB


@dataclass(frozen=True)
class RunConfig:
    """Everything ``edge-sdk run`` (and :func:`edge_sdk.build_pipeline`) needs; see the module docstring."""

    model: str = "demo"
    backend: str | None = None
    threads: int | None = None
    source: str | None = None
    max_fps: float | None = None
    max_frames: int | None = None
    faces: str = "largest"
    log_dir: str | None = None
    status_every_s: float = 5.0
    watchdog_s: float = 10.0
    preview: bool = False
    print_frames: bool = False
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    pain: PainSettings = field(default_factory=PainSettings)
    log: LogSettings = field(default_factory=LogSettings)


SECTIONS: dict[str, type] = {
    "capture": CaptureSettings,
    "detector": DetectorSettings,
    "pain": PainSettings,
    "log": LogSettings,
}


def _flatten(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in SECTIONS:
                raise InputError(f"{where}: unknown section [{key}]; expected one of {', '.join(SECTIONS)}")
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def validate(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Check flat dotted keys against OPTIONS; ints are accepted where floats are expected."""
    for key, value in values.items():
        option = OPTIONS.get(key)
        if option is None:
            section = key.rsplit(".", 1)[0] + "." if "." in key else ""
            known = sorted(k for k in OPTIONS if k.startswith(section) and (section or "." not in k))
            raise InputError(f"{where}: unknown key '{key}'; known keys here: {', '.join(known)}")
        if isinstance(value, bool) and bool not in option.types or not isinstance(value, option.types):
            names = " or ".join(t.__name__ for t in option.types)
            raise InputError(f"{where}: key '{key}' = {value!r}: expected {names}")
        problem = option.check(value) if option.check else None
        if problem:
            raise InputError(f"{where}: key '{key}' = {value!r}: {problem}")
    return dict(values)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read and validate a config file into flat dotted keys."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--config {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    return validate(_flatten(data, str(path)), str(path))


def build_config(file_values: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Defaults, then the file's values, then non-None ``overrides`` (command-line flags, flat dotted keys)."""
    merged = dict(file_values or {})
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    validate(merged, "configuration")
    values: dict[str, dict[str, Any]] = {"": {}, **{name: {} for name in SECTIONS}}
    for key, value in merged.items():
        option = OPTIONS[key]
        section, _, name = key.rpartition(".")
        values[section][option.field_name or name] = option.convert(value) if option.convert else value
    top = values.pop("")
    return RunConfig(**top, **{name: cls(**values[name]) for name, cls in SECTIONS.items()})


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """:func:`build_config` from the TOML file at ``path`` (none: defaults only) and ``overrides``."""
    return build_config(load_toml(path) if path else {}, overrides)
