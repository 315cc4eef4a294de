"""The runtime loop: capture -> face -> model -> pain state -> sinks.

Assembling one from a config (with the encrypted log) is :func:`edge_sdk.build_pipeline`, one layer up.
"""

from edge_sdk.pipeline.alerts import PainEvent, PainMonitor, PainSettings, PainState, PainStatus
from edge_sdk.pipeline.analyze import PAIN_UNAVAILABLE, FaceAnalyzer
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
    "load_toml",
]
