"""The runtime loop: capture -> face -> model -> pain state -> sinks.

Python API for kiosk apps::

    from edge_sdk.pipeline import build_pipeline, RunConfig
    pipeline, capture = build_pipeline(RunConfig(source="0"), on_result=lambda r: print(r.pain.state))
    pipeline.run(capture)
"""

from edge_sdk.pipeline.alerts import PainEvent, PainMonitor, PainSettings, PainState, PainStatus
from edge_sdk.pipeline.analyze import PAIN_UNAVAILABLE, FaceAnalyzer
from edge_sdk.pipeline.build import build_pipeline
from edge_sdk.pipeline.config import RunConfig, build_config, load_toml
from edge_sdk.pipeline.result import STAGES, FaceResult, FrameResult
from edge_sdk.pipeline.runner import Pipeline, RunSummary
from edge_sdk.pipeline.sinks import CallbackSink, JsonLinesSink, Sink, StdoutSink

__all__ = [
    "PAIN_UNAVAILABLE",
    "STAGES",
    "CallbackSink",
    "FaceAnalyzer",
    "FaceResult",
    "FrameResult",
    "JsonLinesSink",
    "PainEvent",
    "PainMonitor",
    "PainSettings",
    "PainState",
    "PainStatus",
    "Pipeline",
    "RunConfig",
    "RunSummary",
    "Sink",
    "StdoutSink",
    "build_config",
    "build_pipeline",
    "load_toml",
]
