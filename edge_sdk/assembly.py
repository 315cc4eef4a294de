"""Assemble a running monitor from a RunConfig: capture, detector, model, pipeline and its sinks,
the encrypted log among them (used by ``edge-sdk run`` and kiosk apps).

This is the composition root: it sits above every layer it wires (``pipeline`` never imports
``store``; the log sink is plugged in here).

What it does is logged (logger ``edge_sdk.assembly``: the detector, the log, forwarding, which artifact an
export folder chose); nothing is printed. Results go to the sinks passed in and to ``on_result``.

Example (a kiosk app)::

    from edge_sdk import RunConfig, build_pipeline
    pipeline, capture = build_pipeline(RunConfig(source="0"), on_result=lambda r: print(r.pain.state))
    pipeline.run(capture)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_sdk.capture import Capture, open_source
from edge_sdk.cpu import artifact_kernels_notice
from edge_sdk.errors import InputError
from edge_sdk.face.detect import create_detector
from edge_sdk.forward.hub import ForwardHub
from edge_sdk.model.face_model import FaceModel
from edge_sdk.pipeline.alerts import PainMonitor
from edge_sdk.pipeline.analyze import FaceAnalyzer
from edge_sdk.pipeline.config import RunConfig
from edge_sdk.pipeline.result import FrameResult
from edge_sdk.pipeline.runner import Pipeline
from edge_sdk.pipeline.sinks import JsonLinesSink, Sink, run_log_path
from edge_sdk.store import EncryptedLogSink, KeySource

log = logging.getLogger(__name__)


def load_model(name: str, backend: str | None = None, threads: int | None = None) -> FaceModel:
    """The FaceModel (synthetic demo weights warn: :class:`~edge_sdk.model.face_model.SyntheticWeightsWarning`).

    ``name`` may be an ``edge-sdk export`` folder: the artifact its ``pick.json`` chose is loaded, and which one
    (and a pick made on another CPU) is logged. Gates measured on another int8 kernel class than this CPU's
    are a logged warning.
    """
    options: dict[str, Any] = {"threads": threads} if threads else {}
    model = FaceModel(name, backend=backend, **options)
    for note in model.resolved.notes:
        (log.warning if note.startswith("NOTICE") else log.info)("%s", note)
    notice = artifact_kernels_notice(model.card.export, Path(model.path).name)
    if notice is not None:  # gates measured on another int8 kernel class than this CPU's
        log.warning("WARNING: %s", notice)
    return model


def open_log_sink(config: RunConfig) -> Sink:
    """The result log in ``config.log_dir``: the encrypted private log, or JSON lines when asked for.

    A log dir that cannot be written (permissions, read-only) is an :class:`InputError` naming it. A full
    disk is not: the encrypted log starts *unavailable* (its ``health()`` says so), the monitor runs, and
    the rows it holds in memory are written once there is space.
    """
    assert config.log_dir is not None
    settings = config.log
    if settings.format == "jsonl":
        path = run_log_path(config.log_dir)
        log.info("result log: %s (plain JSON lines: for bench tests, not patients)", path)
        return JsonLinesSink(path)
    sink = EncryptedLogSink.open(config.log_dir, settings)
    health = sink.health()
    if health.ok:
        log.info("result log: %s (encrypted, pseudonymous, hash-chained)", config.log_dir)
    else:
        log.warning(
            "result log: %s is UNAVAILABLE (%s): monitoring continues, results are held in memory and written when "
            "the log can be opened",
            config.log_dir,
            health.problem,
        )
    return sink


def open_forwarding(config: RunConfig, model: FaceModel) -> ForwardHub:
    """The forwarders of ``config.forward`` reading the outbox in the encrypted log (senders not yet started)."""
    assert config.log_dir is not None
    settings = config.log
    key_file = Path(settings.key_file) if settings.key_file else None
    ring = KeySource(key_file=key_file, key_command=settings.key_command).load(create=False)
    hub = ForwardHub(
        config.forward,
        config.log_dir,
        ring,
        model=model.card.name,
        synthetic=model.is_synthetic_demo,
    )
    names = ", ".join(f.name for f in hub.forwarders)
    log.info("forwarding: %s as device %s (at least once, from the log's outbox)", names, hub.device_id)
    return hub


def build_pipeline(
    config: RunConfig,
    sinks: Sequence[Sink] = (),
    on_result: Callable[[FrameResult], None] | None = None,
    model: FaceModel | None = None,
    source: Any = None,
) -> tuple[Pipeline, Capture]:
    """A ready :class:`~edge_sdk.pipeline.runner.Pipeline` and its :class:`~edge_sdk.capture.Capture`.

    ``sinks`` receive every frame and event record (the encrypted log of ``config.log_dir`` is added after
    them); ``on_result`` gets each :class:`~edge_sdk.pipeline.result.FrameResult`. ``model``/``source`` may be
    passed in (a loaded model, a fake camera in tests). Nothing is printed: ``config.print_frames`` is for the
    CLI, which adds a :class:`~edge_sdk.pipeline.sinks.StdoutSink` itself.

    >>> from edge_sdk import RunConfig, build_pipeline
    >>> pipeline, capture = build_pipeline(RunConfig(source="clip.mp4", max_frames=10))  # doctest: +SKIP
    >>> pipeline.run(capture).frames  # doctest: +SKIP
    10
    """
    if source is None:
        if not config.source:
            raise InputError("no source: pass --source (0, /dev/video0, picamera2, rtsp://..., file.mp4, folder/)")
        c = config.capture
        preview_size = (c.preview_width, c.preview_height) if c.preview_width and c.preview_height else None
        source = open_source(config.source, width=c.width, height=c.height, main_size=preview_size)
    model = model or load_model(config.model, config.backend, config.threads)
    d = config.detector
    detector = create_detector(d.kind, d.model, score_threshold=d.score_threshold, scale=d.scale)
    analyzer = FaceAnalyzer(model, detector, faces=config.faces, detect_interval=d.interval, track=d.tracking)
    log.info("face detector: %s, every %d frame(s)", analyzer.detector.description, d.interval)
    all_sinks: list[Sink] = list(sinks)
    if config.forward.enabled and (not config.log_dir or config.log.format != "encrypted"):
        raise InputError(
            "[forward] needs the encrypted log (--log-dir, log.format = 'encrypted'): it is the outbox that "
            "keeps every event until a forwarder delivered it"
        )
    if config.log_dir:
        all_sinks.append(open_log_sink(config))
    hub = open_forwarding(config, model) if config.forward.enabled else None
    if hub is not None:
        all_sinks.append(hub)  # after the log: closed once the log committed the run's last events
    preview = None
    if config.preview:
        from edge_sdk.pipeline.preview import PreviewWindow

        preview = PreviewWindow()
    pipeline = Pipeline(
        analyzer,
        PainMonitor(config.pain, available=analyzer.has_pain),
        all_sinks,
        on_result=on_result,
        max_fps=config.max_fps,
        max_frames=config.max_frames,
        status_every_s=config.status_every_s,
        watchdog_s=config.watchdog_s,
        preview=preview,
    )
    if hub is not None:
        hub.attach(pipeline.emit_event)  # acks from the station become alert_acknowledged events in the log
        hub.start()
    c = config.capture
    capture = Capture(
        source,
        on_event=pipeline.on_capture_event,
        backoff_initial_s=c.reconnect_initial_s,
        backoff_max_s=c.reconnect_max_s,
        queue_size=c.queue_size,
    )
    return pipeline, capture
