"""``edge-sdk doctor``: what this device has, what will run, and how to fix what will not.

Each check returns :class:`Finding` rows (ok / info / warn / FAIL, with the fix). A FAIL on something
the configured pipeline needs (its model's backend and card, the face detector, the camera source, the
log directory and key when logging is on) makes the exit code 1; everything else is informational.
Camera probes run in a child process with a timeout, read at most one frame and release the device,
so a wedged driver cannot hang the doctor and no camera is held open.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge_sdk.capture.base import redact_url
from edge_sdk.contract.card import ModelCard
from edge_sdk.cpu import INT8_KERNEL_CLASSES, artifact_kernels_notice, describe_cpu
from edge_sdk.errors import EdgeSdkError
from edge_sdk.targets import TARGETS, Target

STATUSES = ("ok", "info", "warn", "FAIL")
MIN_PYTHON = (3, 10)
LOW_DISK_BYTES = 1 << 30
CAMERA_TIMEOUT_S = 8.0
MAX_VIDEO_NODES = 8

# Child-process probes: print one JSON line. The OpenCV probe reads one frame and releases at once.
OPENCV_PROBE = """
import json, sys, cv2
src = sys.argv[1]
cap = cv2.VideoCapture(int(src) if src.isdigit() else src)
opened = bool(cap.isOpened())
shape = None
if opened:
    ok, frame = cap.read()
    shape = list(frame.shape) if ok and frame is not None else None
cap.release()
print(json.dumps({"opened": opened, "shape": shape}))
"""
PICAMERA2_PROBE = """
import json
from picamera2 import Picamera2
cams = Picamera2.global_camera_info()
print(json.dumps([{str(k): str(v) for k, v in c.items()} for c in cams]))
"""


@dataclass(frozen=True)
class Finding:
    """One line of the report."""

    check: str
    status: str  # one of STATUSES
    detail: str
    fix: str = ""
    required: bool = False  # a FAIL here means the configured pipeline cannot run


@dataclass(frozen=True)
class Setup:
    """What the doctor checks the device against (from --config and flags)."""

    model: str = "demo"
    backend: str | None = None
    source: str | None = None  # None: any camera
    detector_kind: str = "auto"
    detector_model: str | None = None
    log_dir: str | None = None
    key_file: str | None = None
    camera_timeout_s: float = CAMERA_TIMEOUT_S
    dev_dir: Path = Path("/dev")
    forward: Any = None  # the config's ForwardSettings ([forward]); None or no forwarder: nothing leaves
    endpoint_timeout_s: float = 5.0


# ---- probes ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    data: Any = None
    error: str = ""


def run_probe(code: str, args: list[str], timeout_s: float) -> ProbeResult:
    """Run ``code`` in a child Python with a timeout; parse its last stdout line as JSON."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(False, error=f"no answer within {timeout_s:g} s (driver hung?); the probe was killed")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return ProbeResult(False, error=last[:300])
    try:
        return ProbeResult(True, json.loads(done.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return ProbeResult(False, error=f"unexpected probe output {done.stdout[-200:]!r}")


def video_nodes(dev_dir: Path) -> list[int]:
    """Indices N of ``/dev/videoN`` nodes, sorted."""
    if not dev_dir.is_dir():
        return []
    found = (p.name[5:] for p in dev_dir.glob("video*"))
    return sorted(int(n) for n in found if n.isdigit())


def probe_opencv(source: str, timeout_s: float) -> Finding:
    result = run_probe(OPENCV_PROBE, [source], timeout_s)
    source = redact_url(source)  # what is printed: never the credentials in a stream URL
    if not result.ok:
        return Finding(f"camera {source}", "FAIL", f"OpenCV probe failed: {redact_url(result.error)}")
    if not result.data["opened"]:
        return Finding(f"camera {source}", "FAIL", "OpenCV cannot open it")
    if result.data["shape"] is None:
        return Finding(f"camera {source}", "FAIL", "opens but gives no frame (busy, or not a capture node)")
    h, w = result.data["shape"][:2]
    return Finding(f"camera {source}", "ok", f"OpenCV opened it and read a {w}x{h} frame")


def probe_picamera2(timeout_s: float) -> Finding:
    result = run_probe(PICAMERA2_PROBE, [], timeout_s)
    if not result.ok:
        missing = "No module named 'picamera2'" in result.error
        detail = "picamera2 is not installed" if missing else f"picamera2 probe failed: {result.error}"
        return Finding("camera picamera2", "info" if missing else "FAIL", detail)
    if not result.data:
        return Finding("camera picamera2", "FAIL", "picamera2 imports but lists no camera")
    names = ", ".join(c.get("Model", "?") for c in result.data)
    return Finding("camera picamera2", "ok", f"{len(result.data)} camera(s): {names}")


# ---- checks ----------------------------------------------------------------------------------------
def check_python(setup: Setup) -> list[Finding]:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info[:2] >= MIN_PYTHON
    fix = "" if ok else f"install Python >= {MIN_PYTHON[0]}.{MIN_PYTHON[1]} and recreate the venv"
    return [Finding("python", "ok" if ok else "FAIL", f"{version} ({sys.executable})", fix, required=True)]


def check_cpu(setup: Setup) -> list[Finding]:
    cpu = describe_cpu()
    return [
        Finding(
            "cpu",
            "info",
            f"{cpu.summary} ({os.cpu_count()} logical); {platform.system()} {platform.release()}; "
            f"int8 results depend on this class: {INT8_KERNEL_CLASSES[cpu.int8_kernels]}",
        )
    ]


def check_backends(setup: Setup) -> list[Finding]:
    from edge_sdk.backend import BACKENDS, backend_class, backend_for

    try:
        from edge_sdk.model.face_model import resolve_model

        needed = backend_for(resolve_model(setup.model), setup.backend)
    except EdgeSdkError:
        needed = setup.backend  # the model check reports why the model cannot be found
    findings = []
    for name, entry in BACKENDS.items():
        required = name == needed
        try:
            module = importlib.import_module(entry.requires)
        except Exception as exc:  # a broken wheel can raise more than ImportError
            status = "FAIL" if required else "info"
            detail = f"'{entry.requires}' does not import ({type(exc).__name__}: {str(exc)[:120]})"
            findings.append(Finding(f"backend {name}", status, detail, entry.install_hint, required))
            continue
        version = getattr(module, "__version__", "")
        try:
            extras = backend_class(name).runtime_details()
        except Exception as exc:
            extras = f"device query failed: {exc}"
        detail = f"{entry.requires} {version}".strip() + (f"; {extras}" if extras else "")
        findings.append(Finding(f"backend {name}", "ok", detail, required=required))
    return findings


def _ran_on(target: Target) -> str:
    """Where this machine would run ``target``'s artifact: its best available provider, else the CPU."""
    if target.providers:
        try:
            import onnxruntime as ort

            available = set(ort.get_available_providers())
            return next((p for p in target.providers if p in available), "CPUExecutionProvider")
        except ImportError:
            pass
    return "CPU"


def check_targets(setup: Setup) -> list[Finding]:
    """One line per row of the target table: can this machine run its artifacts, and is it that device?"""
    from edge_sdk.bench.machine import collect_machine_info, device_verdict

    machine = collect_machine_info()
    findings = []
    for target in TARGETS.values():
        fmt = target.format
        runs = importlib.util.find_spec(fmt.requires) is not None
        verdict = device_verdict(target.name, machine, _ran_on(target))
        detail = (
            f"{fmt.name} artifacts on {fmt.backend} ("
            + ("installed" if runs else f"not installed: {fmt.install_hint}")
            + f"); {verdict.reason}"
        )
        findings.append(Finding(f"target {target.name}", "info", detail))
    return findings


MODEL_OUTPUT_FIX = (
    "the weights are damaged (bit rot, a bad copy or export) or the card does not fit the model: "
    "restore or re-export it (compare its sha256 with the original)"
)


def check_model(setup: Setup) -> list[Finding]:
    """The model loads, its card validates, and one forward pass on a rendered face gives finite outputs
    inside the card's ranges."""
    from edge_sdk.model.face_model import FaceModel
    from edge_sdk.model.self_test import forward_check

    try:
        model = FaceModel(setup.model, backend=setup.backend)
    except EdgeSdkError as exc:
        fix = "pull it (`edge-sdk models pull NAME`) or set `model` to a file with a card"
        return [Finding(f"model {setup.model}", "FAIL", str(exc), fix, required=True)]
    problem = forward_check(model)
    if problem is not None:
        return [Finding(f"model {setup.model}", "FAIL", f"{model.path}: {problem}", MODEL_OUTPUT_FIX, required=True)]
    card = model.card
    heads = ", ".join(h.name for h in card.heads) + (", pspi" if card.has_pain else "")
    demo = "; SYNTHETIC DEMO weights (meaningless on real people)" if card.provenance.synthetic_demo else ""
    detail = f"{model.path} on {model.info.backend} ({model.info.device}): {heads}{demo}"
    finding = Finding(f"model {setup.model}", "warn" if demo else "ok", detail, required=True)
    return [finding, *model_kernel_findings(card, Path(model.path))]


def model_kernel_findings(card: ModelCard, path: Path) -> list[Finding]:
    """Were the artifact's fidelity gates measured on this CPU's int8 kernel class? (``export.validated_on``)

    A warning when they were measured on another class (the same INT8 file can pass on one and fail on the
    other); an info line for an INT8 artifact whose card does not say; nothing for FP32 files.
    """
    export = card.export
    if export.precision == "fp32":
        return []
    check = "model int8 kernels"
    validated = export.validated_on
    if validated is None:
        detail = (
            f"{path.name}: its card does not say on which int8 kernels its fidelity gates were measured "
            "(exported before edge-sdk recorded it, or not by `edge-sdk export`)"
        )
        return [Finding(check, "info", detail)]
    cpu = describe_cpu()
    notice = artifact_kernels_notice(export, path.name, cpu)
    if notice is None:
        if validated.kernels == cpu.int8_kernels:
            detail = f"{path.name}: fidelity gates measured on {validated.kernels} ({validated.cpu}), this CPU's class"
        else:
            detail = (
                f"{path.name}: fidelity gates passed on {cpu.int8_kernels}, this CPU's class (measured on "
                f"{validated.cpu} with its ISA capped)"
            )
        return [Finding(check, "ok", detail)]
    fix = (
        f"re-run `edge-sdk export` on a machine of class {cpu.int8_kernels} (it measures the gates there), or use an "
        f"artifact whose card says export.validated_on.kernels = {cpu.int8_kernels}"
    )
    return [Finding(check, "warn", notice, fix)]


def check_registry(setup: Setup) -> list[Finding]:
    from edge_sdk.errors import ArtifactError
    from edge_sdk.models_registry import REGISTRY, cache_dir, model_path, verify_pulled

    findings = []
    for entry in REGISTRY.values():
        try:
            manifest = verify_pulled(entry)
        except ArtifactError as exc:
            if model_path(entry).is_file():
                fix = f"delete {model_path(entry).parent} and pull again"
                findings.append(Finding(f"cache {entry.name}", "FAIL", str(exc), fix))
            else:
                detail = f"not pulled (cache {cache_dir()})"
                findings.append(Finding(f"cache {entry.name}", "info", detail, f"edge-sdk models pull {entry.name}"))
            continue
        detail = f"{model_path(entry)} sha256 verified ({manifest.sha256[:12]}...; {entry.license})"
        findings.append(Finding(f"cache {entry.name}", "ok", detail))
    return findings


def check_detector(setup: Setup) -> list[Finding]:
    from edge_sdk.face.detect import create_detector

    try:
        detector = create_detector(setup.detector_kind, setup.detector_model)
    except EdgeSdkError as exc:
        return [Finding("face detector", "FAIL", str(exc), "edge-sdk models pull yunet [--from DIR]", True)]
    name = getattr(detector, "name", type(detector).__name__)
    if name == "yunet":
        return [Finding("face detector", "ok", "YuNet", required=True)]
    fix = "edge-sdk models pull yunet (YuNet is more accurate and gives landmarks)"
    return [Finding("face detector", "warn", f"{name} (YuNet not found)", fix, required=True)]


CAMERA_FIX = (
    "connect a USB camera (`ls /dev/video*`) or the Pi camera (`rpicam-hello --list-cameras`); "
    "set `source` in the config; for a dry run use a video file as source"
)


def check_camera(setup: Setup) -> list[Finding]:
    source = setup.source
    if source is not None and (source == "picamera2" or source.startswith("picamera2:")):
        finding = probe_picamera2(setup.camera_timeout_s)
        status = "FAIL" if finding.status != "ok" else "ok"
        return [Finding(finding.check, status, finding.detail, "" if status == "ok" else CAMERA_FIX, True)]
    if source is not None:
        if Path(source).is_dir():
            return [Finding(f"source {redact_url(source)}", "ok", "image folder", required=True)]
        finding = probe_opencv(source, setup.camera_timeout_s)
        fix = "" if finding.status == "ok" else CAMERA_FIX
        return [Finding(finding.check, finding.status, finding.detail, fix, required=True)]
    # No source configured: list what is there, and fail if nothing can be opened.
    nodes = video_nodes(setup.dev_dir)[:MAX_VIDEO_NODES]
    findings = [probe_opencv(str(i), setup.camera_timeout_s) for i in nodes]
    findings.append(probe_picamera2(setup.camera_timeout_s))
    if not any(f.status == "ok" for f in findings):
        where = f"no {setup.dev_dir}/video* nodes" if not nodes else f"none of {setup.dev_dir}/video{nodes} opened"
        findings.append(Finding("camera", "FAIL", f"no camera: {where}, no picamera2 camera", CAMERA_FIX, True))
    return findings


def _free(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_storage(setup: Setup) -> list[Finding]:
    from edge_sdk.models_registry import cache_dir
    from edge_sdk.store.keys import KeySource

    findings = []
    places = {"model cache": cache_dir()}
    if setup.log_dir:
        places["log dir"] = Path(setup.log_dir)
    for label, path in places.items():
        free = _free(path)
        status = "ok" if free >= LOW_DISK_BYTES else "warn"
        fix = "" if status == "ok" else "free some space: the log stops writing when the disk is full"
        findings.append(Finding(f"disk ({label})", status, f"{free / 2**30:.1f} GiB free at {path}", fix))
    if not setup.log_dir:
        findings.append(Finding("log", "info", "no log_dir configured: results are not logged"))
        return findings
    log_dir = Path(setup.log_dir)
    log_min_free, probe_bytes = 16 << 20, 64 << 10  # ~6 min of every-frame logging at 30 fps; a real write
    space_fix = f"free space on the disk of {log_dir}: while it is full the log keeps results in memory only"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=log_dir, prefix=".doctor-") as probe:
            probe.write(b"\0" * probe_bytes)
            probe.flush()
            os.fsync(probe.fileno())
        free = _free(log_dir)
        if free < log_min_free:
            detail = f"{log_dir}: only {free / 2**20:.1f} MiB free, the log needs {log_min_free >> 20} MiB"
            findings.append(Finding("log dir", "FAIL", detail, space_fix, True))
        else:
            findings.append(Finding("log dir", "ok", f"{log_dir} is writable", required=True))
    except OSError as exc:
        if exc.errno in (28, 122):  # ENOSPC, EDQUOT
            findings.append(Finding("log dir", "FAIL", f"{log_dir}: disk full ({exc.strerror})", space_fix, True))
        else:
            fix = f"create it and give the service user write access (systemd: ReadWritePaths={log_dir})"
            findings.append(Finding("log dir", "FAIL", f"{log_dir} is not writable ({exc.strerror})", fix, True))
    try:
        ring = KeySource(key_file=Path(setup.key_file) if setup.key_file else None).load(create=False)
        findings.append(Finding("log key", "ok", f"present (active key id {ring.active})", required=True))
    except EdgeSdkError as exc:
        findings.append(Finding("log key", "FAIL", str(exc), "edge-sdk log init-key (or provision the key file)", True))
    return findings


def check_forward(setup: Setup) -> list[Finding]:
    """Each forwarder: DNS, TCP, TLS and auth to its endpoint; the outbox backlog in the log.

    An endpoint that cannot be reached is a FAIL but not a blocking one: the monitor runs and the outbox
    keeps every event until it is delivered (within the log's quota and retention)."""
    from edge_sdk.forward.kinds import build_forwarders
    from edge_sdk.forward.messages import FORWARDED_EVENTS

    forward = setup.forward
    if forward is None or not forward.enabled:
        return [Finding("forward", "info", "no [forward] section: alerts stay on this device (stdout and the log)")]
    try:
        forwarders = build_forwarders(forward)
    except EdgeSdkError as exc:
        return [Finding("forward", "FAIL", str(exc), "fix the [forward] section of edge-sdk.toml", True)]
    findings = []
    for forwarder in forwarders:
        try:
            checks = forwarder.check(setup.endpoint_timeout_s)
        except Exception as exc:  # a check that crashes is a finding, never a traceback
            checks = []
            findings.append(Finding(f"forward {forwarder.name}", "FAIL", f"check crashed: {exc}"))
        for c in checks:
            fix = "" if c.ok else _FORWARD_FIXES.get(c.step, "")
            findings.append(Finding(f"forward {forwarder.name} {c.step}", "ok" if c.ok else "FAIL", c.detail, fix))
    findings += _outbox_findings(setup, frozenset(FORWARDED_EVENTS))
    return findings


_FORWARD_FIXES = {
    "dns": "check the host name in the url and the device's DNS (resolv.conf)",
    "tcp": "is the broker/server up, and does the firewall (and the unit's IPAddressAllow) let this port through?",
    "tls": "ca_file must hold the CA that signed the server certificate, and the url's host must be in it",
    "auth": "check username/password_file (or token_file) and the broker's ACL for this device_id",
}


def _outbox_findings(setup: Setup, wanted: frozenset[str]) -> list[Finding]:
    import time

    from edge_sdk.store.keys import KeySource
    from edge_sdk.store.outbox import read_backlogs

    if not setup.log_dir or not (Path(setup.log_dir) / "results.db").exists():
        return [Finding("forward outbox", "info", "no log yet: the outbox is empty")]
    try:
        ring = KeySource(key_file=Path(setup.key_file) if setup.key_file else None).load(create=False)
        backlogs = read_backlogs(setup.log_dir, ring, wanted)
    except Exception as exc:  # no key, a damaged log: reported by the storage checks too
        return [Finding("forward outbox", "warn", f"cannot read the outbox: {exc}")]
    if not backlogs:
        return [Finding("forward outbox", "info", "nothing forwarded from this log yet")]
    findings = []
    for b in backlogs:
        age = f", oldest waiting {time.time() - b.oldest:.0f} s" if b.oldest is not None else ""
        lost = f", {b.lost} row(s) purged before delivery" if b.lost else ""
        status = "ok" if not b.waiting and not b.lost else "warn"
        detail = f"{b.waiting} event(s) waiting{age}; {b.delivered} delivered{lost}"
        fix = "" if status == "ok" else "the endpoint is unreachable or refusing: see the checks above"
        findings.append(Finding(f"forward {b.forwarder} outbox", status, detail, fix))
    return findings


CHECKS: tuple[Callable[[Setup], list[Finding]], ...] = (
    check_python,
    check_cpu,
    check_backends,
    check_targets,
    check_model,
    check_registry,
    check_detector,
    check_camera,
    check_storage,
    check_forward,
)


def diagnose(setup: Setup) -> list[Finding]:
    """Run every check; a check that crashes becomes a FAIL finding instead of a traceback."""
    findings: list[Finding] = []
    for check in CHECKS:
        try:
            findings += check(setup)
        except Exception as exc:  # the doctor must report, not die
            name = check.__name__.removeprefix("check_")
            findings.append(Finding(name, "FAIL", f"check crashed: {type(exc).__name__}: {exc}", required=True))
    return findings


def blocking(findings: list[Finding]) -> list[Finding]:
    """The findings that stop the configured pipeline from running."""
    return [f for f in findings if f.required and f.status == "FAIL"]


# ---- CLI -------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="the edge-sdk.toml the device runs with (model, source, detector, log_dir)")
    parser.add_argument("--model", help="model to check (default: the config's, else 'demo')")
    parser.add_argument("--backend", help="force a backend for the model check")
    parser.add_argument("--source", help="camera/source to check (default: the config's, else any camera)")
    parser.add_argument("--log-dir", help="log directory to check (default: the config's)")
    parser.add_argument("--key-file", help="log key file (default: $EDGE_SDK_LOG_KEY or the default key file)")
    parser.add_argument("--camera-timeout", type=float, default=CAMERA_TIMEOUT_S, help="seconds per camera probe")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")


def setup_from_args(args: argparse.Namespace) -> Setup:
    from edge_sdk.cli.flags import flags_given
    from edge_sdk.pipeline.config import OPTIONS, load_config

    config = load_config(args.config, flags_given(args, OPTIONS))  # --model/--backend/--source/--log-dir
    return Setup(
        model=config.model,
        backend=config.backend,
        source=config.source,
        detector_kind=config.detector.kind,
        detector_model=config.detector.model,
        log_dir=config.log_dir,
        key_file=args.key_file or config.log.key_file,
        camera_timeout_s=args.camera_timeout,
        forward=config.forward,
    )


def run(args: argparse.Namespace) -> int:
    findings = diagnose(setup_from_args(args))
    stoppers = blocking(findings)
    if args.json:
        print(json.dumps({"can_run": not stoppers, "findings": [asdict(f) for f in findings]}, indent=2))
        return 1 if stoppers else 0
    width = max(len(f.check) for f in findings)
    for f in findings:
        print(f"[{f.status:^4}] {f.check:<{width}}  {f.detail}")
        if f.fix and f.status in ("warn", "FAIL"):
            print(f"{'':7}{'':<{width}}  fix: {f.fix}")
    if stoppers:
        print(f"\nthe configured pipeline cannot run: {', '.join(f.check for f in stoppers)}")
        return 1
    print("\nthe configured pipeline can run on this device")
    return 0
