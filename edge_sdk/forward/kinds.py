"""The table of forwarder kinds: one row per kind (adding one = a row + its module).

Each row names the ``[forward.<kind>]`` section (a field of
:class:`~edge_sdk.pipeline.config.ForwardSettings`) and the function that builds the forwarder from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge_sdk.forward import messages as m

if TYPE_CHECKING:
    from edge_sdk.forward.base import Forwarder
    from edge_sdk.pipeline.config import ForwardSettings


@dataclass(frozen=True)
class ForwarderContext:
    """What a forwarder may need from the running monitor: the current state, where acks go, the model."""

    state: Callable[[], m.State] | None = None
    on_ack: Callable[[m.Ack], None] | None = None
    synthetic: bool = False
    on_connected: Callable[[], None] | None = None  # a connection came (back): retry deliveries now


@dataclass(frozen=True)
class ForwarderKind:
    name: str
    description: str
    build: Callable[[Any, ForwardSettings, ForwarderContext], Forwarder]


def _mqtt(settings: Any, forward: ForwardSettings, ctx: ForwarderContext) -> Forwarder:
    from edge_sdk.forward.mqtt import MqttForwarder

    return MqttForwarder(settings, forward, state=ctx.state, on_ack=ctx.on_ack, on_connected=ctx.on_connected)


def _webhook(settings: Any, forward: ForwardSettings, ctx: ForwarderContext) -> Forwarder:
    from edge_sdk.forward.webhook import WebhookForwarder

    return WebhookForwarder(settings, forward)


def _fhir(settings: Any, forward: ForwardSettings, ctx: ForwarderContext) -> Forwarder:
    from edge_sdk.forward.fhir import FhirForwarder

    return FhirForwarder(settings, forward, synthetic=ctx.synthetic)


FORWARDER_KINDS: dict[str, ForwarderKind] = {
    "mqtt": ForwarderKind("mqtt", "MQTT broker (events QoS 1, retained state, acks back)", _mqtt),
    "webhook": ForwarderKind("webhook", "HTTPS POST signed with HMAC-SHA256", _webhook),
    "fhir": ForwarderKind("fhir", "FHIR R4 server (Observation + DetectedIssue per alert)", _fhir),
}


def build_forwarders(forward: ForwardSettings, ctx: ForwarderContext | None = None) -> list[Forwarder]:
    """One forwarder per configured ``[forward.<kind>]`` section, in table order."""
    ctx = ctx or ForwarderContext()
    return [
        kind.build(getattr(forward, name), forward, ctx)
        for name, kind in FORWARDER_KINDS.items()
        if getattr(forward, name) is not None
    ]
