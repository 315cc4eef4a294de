"""``ForwardHub``: the runtime side of forwarding, plugged into the pipeline as one more sink.

* Events reach the forwarders through the encrypted log (the outbox), never from memory: the log sink
  commits each event row, one :class:`~edge_sdk.forward.base.Sender` thread per forwarder reads it back and
  delivers it at least once. The hub's ``write`` only keeps the latest state for the MQTT heartbeat (and,
  with ``frames = true``, hands the frame's PSPI and action units to MQTT, best effort); it never blocks and
  never touches the network.
* Acknowledgements from the station (``{base}/ack``) are recorded through ``record_event`` (the runner's
  ``emit_event``) as ``alert_acknowledged`` events, which the log commits and the senders forward back.
* ``close()`` (the end of a run; the hub is the last sink, after the log) waits up to ``drain_s`` for the
  outbox to drain, publishes the ``stopped`` state and disconnects. Undelivered events stay in the log for
  the next run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_sdk.forward import messages as m
from edge_sdk.forward.base import Sender
from edge_sdk.forward.kinds import ForwarderContext, build_forwarders
from edge_sdk.store.keys import KeyRing
from edge_sdk.store.outbox import Outbox

if TYPE_CHECKING:
    from edge_sdk.pipeline.config import ForwardSettings

_log = logging.getLogger("edge_sdk.forward")
_FAULT_EVENTS = {"model_fault", "log_fault", "pipeline_stalled"}
_RECOVERED = {"model_recovered", "log_recovered", "pipeline_recovered", "source_restored"}


class ForwardHub:
    """See the module docstring. ``record_event`` may be set later with :meth:`attach`."""

    def __init__(
        self,
        settings: ForwardSettings,
        log_dir: Path | str,
        ring: KeyRing,
        *,
        model: str = "",
        synthetic: bool = False,
        record_event: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.device_id = m.check_device_id(settings.device_id or "")
        self.model = model
        self.synthetic = synthetic
        self.record_event = record_event
        self._lock = threading.Lock()
        self._state, self._pspi, self._fault = "unknown", None, None
        self._alert_event_id: str | None = None
        self._frames: list[float] = []
        self._acks_seen: set[str] = set()
        self._closed = False
        ctx = ForwarderContext(
            state=self.state, on_ack=self._on_ack, synthetic=synthetic, on_connected=self._wake_senders
        )
        self.forwarders = build_forwarders(settings, ctx)
        self.senders = [
            Sender(f, Path(log_dir), ring, self.device_id, settings.retry_max_s, idle_s=0.5, on_event=self._delivered)
            for f in self.forwarders
        ]
        self._mqtt = next((f for f in self.forwarders if f.name == "mqtt"), None)
        self._mark_start(Path(log_dir), ring)

    def _mark_start(self, log_dir: Path, ring: KeyRing) -> None:
        """Give a new forwarder its mark now, before the run writes anything: every event of this run is after
        it (history from before forwarding was configured is not sent). A log that cannot be opened now (a full
        disk) is left to the senders, which retry."""
        try:
            outbox = Outbox.open(log_dir, ring)
        except Exception as exc:  # the senders report and retry
            _log.warning("forward: the outbox is not readable yet (%s)", exc)
            return
        try:
            for forwarder in self.forwarders:
                outbox.start(forwarder.name)
        finally:
            outbox.close()

    def _wake_senders(self) -> None:
        for sender in getattr(self, "senders", ()):
            sender.wake()

    def attach(self, record_event: Callable[[Mapping[str, Any]], None]) -> None:
        self.record_event = record_event

    def start(self) -> None:
        for sender in self.senders:
            sender.start()

    # -- state -------------------------------------------------------------------------------------
    def state(self) -> m.State:
        """The current heartbeat (what ``{base}/state`` carries)."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._frames if now - t <= 5.0]
            fps = round(len(recent) / 5.0, 2) if recent else 0.0
            state = self._state if self._state in m.STATES_ALL else "unknown"
            return m.State(
                self.device_id,
                time.time(),
                state,
                self._pspi,
                self._fault,
                self._alert_event_id if state == "alert" else None,
                self.settings.state_every_s,
                {
                    "fps": fps,
                    "outbox_backlog": sum(s.backlog for s in self.senders),
                    "model": self.model,
                    "synthetic": self.synthetic,
                    "forwarders": {s.forwarder.name: s.last_error or "ok" for s in self.senders},
                },
            )

    def _delivered(self, event: m.Event) -> None:
        if event.event in ("alert_raised", "alert_resumed"):
            with self._lock:
                self._alert_event_id = event.id if event.event == "alert_raised" else self._alert_event_id or event.id
        elif event.event == "alert_cleared":
            with self._lock:
                self._alert_event_id = None

    # -- the sink interface (the bedside loop's thread: never blocks) --------------------------------
    def write(self, record: Mapping[str, Any], kind: str = "frame", timestamp: float | None = None) -> None:
        if self._closed:
            return
        if kind == "frame":
            with self._lock:
                self._state = str(record.get("state") or "unknown")
                self._pspi = m.number(record.get("pspi_smoothed"))
                fault = record.get("fault")
                self._fault = str(fault)[:256] if fault else None
                now = time.monotonic()
                self._frames = [t for t in self._frames if now - t <= 5.0] + [now]
            if self.settings.frames and self._mqtt is not None:
                self._mqtt.publish_frame(m.frame_payload(self.device_id, time.time(), record))
            return
        event = str(record.get("event", ""))
        with self._lock:
            if isinstance(record.get("to"), str):
                self._state = record["to"]
            elif event == "source_lost":
                self._state = "no_signal"
            elif event in _FAULT_EVENTS:
                self._state, self._fault = "fault", str(record.get("problem") or event)[:256]
            elif event in _RECOVERED and self._state in ("fault", "no_signal"):
                self._state, self._fault = "unknown", None
        for sender in self.senders:
            sender.wake()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Drain the outbox for up to ``drain_s`` (all forwarders at once), then stop them."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + self.settings.drain_s
        threads = [
            threading.Thread(target=s.finish, args=(max(0.0, deadline - time.monotonic()),), daemon=True)
            for s in self.senders
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(self.settings.drain_s + 15.0)
        for sender in self.senders:
            if sender.backlog:
                _log.warning(
                    "forward %s: %d event(s) not yet delivered; they stay in the log and are sent by the next run",
                    sender.forwarder.name,
                    sender.backlog,
                )

    # -- acks ----------------------------------------------------------------------------------------
    def _on_ack(self, ack: m.Ack) -> None:
        """An ack from the station (paho's thread): recorded once as an ``alert_acknowledged`` event."""
        with self._lock:
            if ack.id in self._acks_seen:
                return
            self._acks_seen.add(ack.id)
        if self.record_event is None or self._closed:
            _log.warning("forward: ack %s for %s arrived while no run records events; ignored", ack.id, ack.event_id)
            return
        self.record_event({**ack.log_record(), "timestamp": time.monotonic()})
