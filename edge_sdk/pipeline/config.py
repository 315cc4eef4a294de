"""``edge-sdk run`` settings: defaults < TOML file (``--config``) < command-line flags.

Every key is declared once in :data:`OPTIONS` with its type and allowed range; unknown keys and bad values
are rejected with the key named. The file is flat keys plus ``[capture]``, ``[detector]``, ``[pain]``, ``[log]``
and ``[forward]`` (with ``[forward.mqtt]``, ``[forward.webhook]``, ``[forward.fhir]``).
A key is the :class:`RunConfig` field it sets (``section.field`` for a section), except where the file is
written in a friendlier unit than the field: ``log.quota_mb`` (MiB) fills ``LogSettings.quota_bytes``, the
one conversion, made here. Command-line flags name the same keys (:mod:`edge_sdk.cli.flags`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_sdk.contract.ranges import Range
from edge_sdk.errors import InputError
from edge_sdk.face.detect import DETECTOR_KINDS
from edge_sdk.face.select import FACE_POLICIES
from edge_sdk.face.track import TrackSettings
from edge_sdk.pipeline.alerts import SIGNAL_S, SMOOTHERS, PainSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Option:
    """One config key: accepted Python types and an optional check returning a problem or None.

    Every number's check is a :class:`~edge_sdk.contract.ranges.Range` (finite, bounded: see the kinds below).
    ``field_name``/``field_unit``: for a key written in another unit than its dataclass field, the field it
    fills and how many field units one key unit is (MiB -> bytes: the field holds ``int(value * field_unit)``).
    """

    types: tuple[type, ...]
    check: Callable[[Any], str | None] | None = None
    help: str = ""
    field_name: str | None = None
    field_unit: int = 1


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"expected one of {', '.join(choices)}"


MIB = 1024 * 1024
HOUR_S = 3600.0

# The kinds of number a setting can be, each one finite range (a key picks its kind; no per-key bounds).
THREAD_COUNT = Range(1, 256, integer=True)
FRAME_COUNT = Range(1, 10**12, integer=True)
PIXELS = Range(1, 16384, integer=True)  # a frame or preview side
QUEUE_FRAMES = Range(1, 1024, integer=True)
DETECT_EVERY = Range(1, 300, integer=True)  # frames between detector runs: a tracked face is re-found within ~10 s
FPS = Range(0, 1000, low_open=True)
PERIOD_S = Range(0, HOUR_S, low_open=True)  # a wait or back-off that must pass: > 0, at most an hour
OPTIONAL_PERIOD_S = Range(0, HOUR_S)  # a period where 0 turns it off
PAIN_S = Range(0, 600)  # pain timings: an alert, a clear or no_face can never be put off beyond 10 min
PSPI_POINTS = Range(0, 16)
PROBABILITY = Range(0, 1)
DETECT_SCALE = Range(0.05, 1)
TRACK_FACE_PX = Range(16, 640, integer=True)  # a tracked face's side in the detector input
TRACK_MARGIN = Range(0.1, 4)  # a tracking crop's margin, a fraction of the face's side
RETENTION_DAYS = Range(0, 36500, low_open=True)  # up to 100 years: purge cut-offs stay representable
QUOTA_MIB = Range(0, 1024 * 1024, low_open=True)  # up to 1 TiB
# (lower key, upper key): the first must not exceed the second.
ORDERED: tuple[tuple[str, str], ...] = (
    ("capture.reconnect_initial_s", "capture.reconnect_max_s"),
    ("pain.clear_threshold", "pain.threshold"),
)

NUM = (int, float)
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # one topic level (edge_sdk.forward.messages)
LOG_FORMATS = ("encrypted", "jsonl")
# [forward], [forward.mqtt], [forward.webhook], [forward.fhir]: events leave the bedside (edge_sdk.forward).
FORWARD_OPTIONS: dict[str, Option] = {
    "forward.device_id": Option((str,), help="pseudonymous bed/device name on the wire (never the patient id)"),
    "forward.state_every_s": Option(NUM, PERIOD_S, "state heartbeat period"),
    "forward.frames": Option((bool,), help="also publish per-frame PSPI and action units (MQTT, best effort)"),
    "forward.retry_max_s": Option(NUM, PERIOD_S, "longest back-off between delivery attempts"),
    "forward.drain_s": Option(NUM, OPTIONAL_PERIOD_S, "at the end of a run, wait this long for the outbox to drain"),
    "forward.mqtt.url": Option((str,), help="mqtts://host:8883 (mqtt:// only with insecure = true)"),
    "forward.mqtt.username": Option((str,)),
    "forward.mqtt.password_file": Option((str,), help="file holding the MQTT password"),
    "forward.mqtt.ca_file": Option((str,), help="CA bundle that signed the broker's certificate"),
    "forward.mqtt.cert_file": Option((str,), help="client certificate (optional)"),
    "forward.mqtt.key_file": Option((str,), help="client certificate key (optional)"),
    "forward.mqtt.topic": Option((str,), help="topic base, {device_id} filled in"),
    "forward.mqtt.insecure": Option((bool,), help="allow mqtt:// without TLS (tests, labs)"),
    "forward.webhook.url": Option((str,), help="https://... (http:// only with insecure = true)"),
    "forward.webhook.secret_file": Option((str,), help="file holding the HMAC-SHA256 signing secret"),
    "forward.webhook.ca_file": Option((str,)),
    "forward.webhook.timeout_s": Option(NUM, PERIOD_S),
    "forward.webhook.insecure": Option((bool,), help="allow http:// (tests, labs)"),
    "forward.fhir.base_url": Option((str,), help="FHIR R4 server base, https://... (http:// only with insecure)"),
    "forward.fhir.token_file": Option((str,), help="file holding the bearer token"),
    "forward.fhir.ca_file": Option((str,)),
    "forward.fhir.timeout_s": Option(NUM, PERIOD_S),
    "forward.fhir.insecure": Option((bool,), help="allow http:// (tests, labs)"),
}
OPTIONS: dict[str, Option] = {
    "model": Option((str,), help="'demo', a model path, an export folder (its pick.json) or a pulled model name"),
    "backend": Option((str,), help="force a backend (onnxruntime, litert, openvino)"),
    "threads": Option((int,), THREAD_COUNT, "inference threads"),
    "source": Option((str,), help="0 | /dev/video0 | picamera2 | rtsp://... | file.mp4 | folder/"),
    "max_fps": Option(NUM, FPS, "cap on processed frames per second"),
    "max_frames": Option((int,), FRAME_COUNT, "stop after this many frames"),
    "faces": Option((str,), _choice(FACE_POLICIES), "largest (the patient) or all"),
    "log_dir": Option((str,), help="folder for the private result log"),
    "status_every_s": Option(NUM, OPTIONAL_PERIOD_S, "status line period, 0 = off"),
    "watchdog_s": Option(NUM, PERIOD_S, "warn when one frame's processing takes longer than this"),
    "preview": Option((bool,), help="draw an overlay in a window (needs an OpenCV with GUI)"),
    "print_frames": Option((bool,), help="one stdout line per frame"),
    "capture.width": Option((int,), PIXELS),
    "capture.height": Option((int,), PIXELS),
    "capture.preview_width": Option((int,), PIXELS, "picamera2 main stream, for --preview"),
    "capture.preview_height": Option((int,), PIXELS),
    "capture.reconnect_initial_s": Option(NUM, PERIOD_S),
    "capture.reconnect_max_s": Option(NUM, PERIOD_S),
    "capture.queue_size": Option((int,), QUEUE_FRAMES, "frames decoded ahead for files (live sources keep 1)"),
    "detector.kind": Option((str,), _choice(DETECTOR_KINDS)),
    "detector.model": Option((str,), help="path to a YuNet .onnx"),
    "detector.score_threshold": Option(NUM, PROBABILITY),
    "detector.scale": Option(NUM, DETECT_SCALE, "detect on a frame resized by this factor"),
    "detector.interval": Option((int,), DETECT_EVERY, "run the detector every N frames while a face is tracked"),
    "detector.track": Option((bool,), help="YuNet: detect in a crop around each tracked face between full frames"),
    "detector.track_face_px": Option((int,), TRACK_FACE_PX, "tracked face's size in the detector input, pixels"),
    "detector.track_margin": Option(NUM, TRACK_MARGIN, "tracking crop margin, fraction of the face's side"),
    "detector.full_every": Option((int,), DETECT_EVERY, "while tracking: a full-frame detection every N detector runs"),
    "pain.threshold": Option(NUM, PSPI_POINTS),
    "pain.clear_threshold": Option(NUM, PSPI_POINTS),
    "pain.raise_after_s": Option(NUM, PAIN_S),
    "pain.clear_after_s": Option(NUM, PAIN_S),
    "pain.smoothing": Option((str,), _choice(tuple(SMOOTHERS))),
    "pain.window_s": Option(NUM, PAIN_S),
    "pain.baseline_s": Option(NUM, PAIN_S, "capture a neutral baseline for this long at start, 0 = off"),
    "pain.face_lost_after_s": Option(NUM, PAIN_S),
    "pain.frame_timeout_s": Option(NUM, SIGNAL_S, "no new frame for this long: no_signal (camera lost or frozen)"),
    "pain.fault_after_s": Option(NUM, SIGNAL_S, "model/detector failing or giving bad outputs this long: fault"),
    "log.format": Option((str,), _choice(LOG_FORMATS), "encrypted (the private log) or jsonl (plain text, bench only)"),
    "log.key_file": Option((str,), help="key ring file (created 0600 on first use)"),
    "log.key_command": Option((str,), help="command printing the key ring (e.g. from a TPM or secrets store)"),
    "log.patient_id": Option((str,), help="stored only as a keyed HMAC pseudonym"),
    "log.device_id": Option((str,), help="stored only as a keyed HMAC pseudonym"),
    "log.retention_days": Option(NUM, RETENTION_DAYS, "purge records older than this"),
    "log.quota_mb": Option(
        NUM,
        QUOTA_MIB,
        "purge oldest records beyond this database size, in MiB",
        field_name="quota_bytes",
        field_unit=MIB,
    ),
    **FORWARD_OPTIONS,
}
# (section, dataclass field) -> the key that sets it ("" is RunConfig's own fields).
FIELD_KEYS: dict[tuple[str, str], str] = {
    (key.rpartition(".")[0], option.field_name or key.rpartition(".")[2]): key for key, option in OPTIONS.items()
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

    def __post_init__(self) -> None:
        check_settings(self, "capture")


@dataclass(frozen=True)
class DetectorSettings:
    """``[detector]``: which face detector, on what frame scale, how often.

    ``track`` (YuNet): between full-frame detections (every ``full_every`` detector runs, and at once when a
    face is lost) search only a crop around each tracked face, grown by ``track_margin`` of the face's side
    and resized so the face is ``track_face_px`` pixels (:class:`~edge_sdk.face.track.RoiTracker`).
    """

    kind: str = "auto"
    model: str | None = None
    score_threshold: float = 0.6
    scale: float = 0.5
    interval: int = 1
    track: bool = True
    track_face_px: int = 64
    track_margin: float = 0.5
    full_every: int = 30

    def __post_init__(self) -> None:
        check_settings(self, "detector")

    @property
    def tracking(self) -> TrackSettings | None:
        """What :class:`~edge_sdk.pipeline.analyze.FaceAnalyzer` takes as ``track`` (None: tracking off)."""
        return TrackSettings(self.track_face_px, self.track_margin, self.full_every) if self.track else None


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

    def __post_init__(self) -> None:
        check_settings(self, "log")


def _check_url(section: str, key: str, url: str | None, secure: tuple[str, ...], plain: str, insecure: bool) -> None:
    """InputError unless ``url`` has a secure scheme, or the plain one with ``insecure = true``."""
    scheme = (url or "").partition("://")[0].lower()
    if url is None or scheme not in (*secure, plain) or not url.partition("://")[2].strip("/"):
        raise InputError(f"[{section}] key '{key}' = {url!r}: expected {secure[0]}://host[:port]...")
    if scheme == plain and not insecure:
        raise InputError(
            f"[{section}] key '{key}' = {url!r}: {plain}:// sends alerts unencrypted; use {secure[0]}:// "
            "or set insecure = true (tests, labs)"
        )


@dataclass(frozen=True)
class MqttSettings:
    """``[forward.mqtt]``: the ward broker. Events go to ``{topic}/events`` (QoS 1), the state heartbeat to
    ``{topic}/state`` (retained), acknowledgements come from ``{topic}/ack``."""

    url: str | None = None
    username: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    topic: str = "edge-sdk/{device_id}"
    insecure: bool = False

    def __post_init__(self) -> None:
        check_settings(self, "forward.mqtt")
        _check_url("forward.mqtt", "url", self.url, ("mqtts",), "mqtt", self.insecure)
        if (self.cert_file is None) != (self.key_file is None):
            raise InputError("[forward.mqtt] keys 'cert_file' and 'key_file' go together (a client certificate)")


@dataclass(frozen=True)
class WebhookSettings:
    """``[forward.webhook]``: POST each event as JSON, signed with HMAC-SHA256 (see edge_sdk.forward.webhook)."""

    url: str | None = None
    secret_file: str | None = None
    ca_file: str | None = None
    timeout_s: float = 10.0
    insecure: bool = False

    def __post_init__(self) -> None:
        check_settings(self, "forward.webhook")
        _check_url("forward.webhook", "url", self.url, ("https",), "http", self.insecure)
        if self.secret_file is None:
            raise InputError("[forward.webhook] key 'secret_file' is required (the HMAC signing secret)")


@dataclass(frozen=True)
class FhirSettings:
    """``[forward.fhir]``: a FHIR R4 server; alerts become an Observation (PSPI) and a Flag."""

    base_url: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    timeout_s: float = 10.0
    insecure: bool = False

    def __post_init__(self) -> None:
        check_settings(self, "forward.fhir")
        _check_url("forward.fhir", "base_url", self.base_url, ("https",), "http", self.insecure)


@dataclass(frozen=True)
class ForwardSettings:
    """``[forward]``: which forwarders send this device's events (each one optional; none: nothing leaves).

    ``device_id`` names the device on the wire (a pseudonymous bed name such as ``bed-12``; never the
    patient id). Events are committed to the encrypted log first and delivered at least once from there
    (the outbox); ``drain_s`` is how long the end of a run waits for the outbox to drain.
    """

    device_id: str | None = None
    state_every_s: float = 5.0
    frames: bool = False
    retry_max_s: float = 30.0
    drain_s: float = 5.0
    mqtt: MqttSettings | None = None
    webhook: WebhookSettings | None = None
    fhir: FhirSettings | None = None

    def __post_init__(self) -> None:
        check_settings(self, "forward")
        if self.enabled and not self.device_id:
            raise InputError("[forward] key 'device_id' is required when a forwarder is configured (e.g. 'bed-12')")
        if self.device_id is not None and not DEVICE_ID.match(self.device_id):
            raise InputError(
                f"[forward] key 'device_id' = {self.device_id!r}: expected 1-64 letters, digits, '_', '.' or '-' "
                "(one MQTT topic level; a pseudonymous bed name, never the patient id)"
            )

    @property
    def enabled(self) -> bool:
        return any(kind is not None for kind in (self.mqtt, self.webhook, self.fhir))


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
    forward: ForwardSettings = field(default_factory=ForwardSettings)

    def __post_init__(self) -> None:
        check_settings(self)  # the sections check themselves too; PainSettings (pipeline.alerts) only here


SECTIONS: dict[str, type] = {
    "capture": CaptureSettings,
    "detector": DetectorSettings,
    "pain": PainSettings,
    "log": LogSettings,
    "forward": ForwardSettings,
    # sub-sections: a field of their parent (None when the file has no such table)
    "forward.mqtt": MqttSettings,
    "forward.webhook": WebhookSettings,
    "forward.fhir": FhirSettings,
}


def _flatten(data: Mapping[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if name not in SECTIONS:
                raise InputError(f"{where}: unknown section [{name}]; expected one of {', '.join(SECTIONS)}")
            flat.update(_flatten(value, where, f"{name}."))
        else:
            flat[name] = value
    return flat


def _check_value(key: str, value: Any, where: str) -> None:
    """InputError unless ``value`` has ``key``'s type and passes its check (ints pass where floats do)."""
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


def validate(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Check flat dotted keys against OPTIONS (type and range), and the :data:`ORDERED` pairs both given."""
    for key, value in values.items():
        _check_value(key, value, where)
    for low, high in ORDERED:
        if low in values and high in values and values[low] > values[high]:
            raise InputError(f"{where}: key '{low}' = {values[low]!r} must not exceed key '{high}' = {values[high]!r}")
    return dict(values)


def settings_values(settings: object, section: str = "") -> dict[str, Any]:
    """The keys a settings object sets, in the keys' units (``quota_bytes`` -> ``log.quota_mb``).

    ``settings`` is a :class:`RunConfig` (every section) or one section's dataclass named by ``section``.
    Fields without a key, and None (off / not set), are left out.
    """
    values: dict[str, Any] = {}
    for item in fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, item.name)
        sub = f"{section}.{item.name}" if section else item.name
        if sub in SECTIONS:
            if value is not None:  # an optional sub-section not configured
                values.update(settings_values(value, sub))
            continue
        key = FIELD_KEYS.get((section, item.name))
        if key is not None and value is not None:
            unit = OPTIONS[key].field_unit
            values[key] = value if unit == 1 else value / unit
    return values


def check_settings(settings: object, section: str = "") -> None:
    """InputError naming the key when a settings object built in code holds a value its key refuses."""
    validate(settings_values(settings, section), type(settings).__name__)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read and validate a config file into flat dotted keys."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--config {path}: no such file") from None
    except OSError as exc:  # a directory, no read permission, an I/O error
        raise InputError(f"--config {path}: cannot read it ({exc.strerror or exc}); expected a TOML file") from None
    except UnicodeDecodeError as exc:
        raise InputError(
            f"--config {path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "expected a TOML file"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    return validate(_flatten(data, str(path)), str(path))


def build_config(
    file_values: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    where: str = "configuration",
) -> RunConfig:
    """Defaults, then the file's values, then non-None ``overrides`` (command-line flags, flat dotted keys).

    ``where`` names the file in errors about the merged values (e.g. a key above its ORDERED partner's default).
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    validate(given, "command line")
    merged = {**(file_values or {}), **given}
    validate({**settings_values(RunConfig()), **merged}, where)
    values: dict[str, dict[str, Any]] = {"": {}, **{name: {} for name in SECTIONS}}
    for key, value in merged.items():
        option = OPTIONS[key]
        section, _, name = key.rpartition(".")
        values[section][option.field_name or name] = value if option.field_unit == 1 else int(value * option.field_unit)
    top = values.pop("")
    return RunConfig(**top, **{name: _section(name, values) for name in SECTIONS if "." not in name})


def _section(name: str, values: Mapping[str, dict[str, Any]]) -> Any:
    """Section ``name``'s dataclass from its keys; a sub-section with no keys stays at its default (None)."""
    kwargs = dict(values[name])
    for child in SECTIONS:
        parent, _, field_name = child.rpartition(".")
        if parent == name and values[child]:
            kwargs[field_name] = _section(child, values)
    return SECTIONS[name](**kwargs)


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """:func:`build_config` from the TOML file at ``path`` (none: defaults only) and ``overrides``."""
    if not path:
        return build_config({}, overrides)
    return build_config(load_toml(path), overrides, str(path))
