"""What every forwarder is, and the sender thread that drains one forwarder's outbox.

A forwarder (:class:`Forwarder`) turns one wire :class:`~edge_sdk.forward.messages.Event` into a delivery
and returns only once the other side acknowledged it (MQTT PUBACK, an HTTP 2xx); anything else raises
:class:`DeliveryError`. The :class:`Sender` thread reads the forwarder's events from the outbox (the
encrypted log, :mod:`edge_sdk.store.outbox`) in row order, delivers them with exponential back-off, and moves
the forwarder's mark only after an acknowledgement. The bedside loop never waits on any of it.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from edge_sdk.errors import InputError
from edge_sdk.forward.messages import Event, event_from_log
from edge_sdk.store.keys import KeyRing
from edge_sdk.store.outbox import Outbox

_log = logging.getLogger("edge_sdk.forward")
BACKOFF_START_S = 0.5


DEFAULT_PORTS = {"mqtts": 8883, "mqtt": 1883, "https": 443, "http": 80}


class DeliveryError(Exception):
    """A delivery that was not acknowledged (it is retried with back-off)."""


@dataclass(frozen=True)
class Check:
    """One ``doctor`` check of a forwarder's endpoint: ``step`` (dns, tcp, tls, auth), ok, what it found."""

    step: str
    ok: bool
    detail: str


class Forwarder(Protocol):
    """One configured destination (see the module docstring)."""

    name: str

    def wants(self, event: Event) -> bool: ...

    def start(self) -> None: ...

    def deliver(self, event: Event) -> None: ...

    def tick(self) -> None: ...

    def stop(self) -> None: ...

    def check(self, timeout: float) -> list[Check]: ...


def read_secret(path: str | None, section: str, key: str) -> str:
    """The first line of a secret file (password, token, signing secret); InputError naming the key."""
    if not path:
        raise InputError(f"[{section}] key '{key}' is required")
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputError(f"[{section}] key '{key}' = {path!r}: cannot read it ({exc.strerror or exc})") from None
    if not text:
        raise InputError(f"[{section}] key '{key}' = {path!r}: the file is empty")
    return text.splitlines()[0]


def tls_context(ca_file: str | None, cert_file: str | None = None, key_file: str | None = None) -> ssl.SSLContext:
    """A verifying TLS client context (system CAs, or ``ca_file``), with a client certificate when given."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
        if cert_file:
            context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"TLS files {ca_file or ''} {cert_file or ''}: cannot load them ({exc})") from None
    return context


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect is not a delivery: never follow it with the body
        return None


class HttpForwarder:
    """What the HTTP forwarders (webhook, FHIR) share: an opener that never follows redirects, and no background
    work of their own (the :class:`Sender` thread calls ``deliver``)."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self.context = context
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirect)

    def start(self) -> None:
        pass

    def tick(self) -> None:
        pass

    def stop(self) -> None:
        pass


def post(opener: urllib.request.OpenerDirector, request: urllib.request.Request, label: str, timeout: float) -> None:
    """Send ``request``; return only on an HTTP 2xx (the receiver has the event), else :class:`DeliveryError`
    naming ``label`` (the endpoint). Redirects count as failures: the opener must not follow them."""
    try:
        with opener.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"{label}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"{label}: {getattr(exc, 'reason', exc)}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"{label}: HTTP {status}")


def host_port(url: str) -> tuple[str, int]:
    """(host, port) of an endpoint URL, the scheme's default port (:data:`DEFAULT_PORTS`) when it names none."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or DEFAULT_PORTS.get(parts.scheme, 443)


def endpoint_checks(url: str, context: ssl.SSLContext | None, timeout: float) -> list[Check]:
    """DNS, TCP and (for TLS) the handshake with certificate and host name verified, for ``doctor``."""
    host, port = host_port(url)
    checks: list[Check] = []
    try:
        addresses = sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
    except OSError as exc:
        return [Check("dns", False, f"{host}: {exc}")]
    checks.append(Check("dns", True, f"{host} -> {', '.join(addresses)}"))
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return [*checks, Check("tcp", False, f"{host}:{port}: {exc}")]
    checks.append(Check("tcp", True, f"{host}:{port} reachable"))
    with sock:
        if context is None:
            return [*checks, Check("tls", False, "no TLS (insecure = true): alerts travel unencrypted")]
        try:
            with context.wrap_socket(sock, server_hostname=host) as tls:
                checks.append(Check("tls", True, f"{tls.version()}, certificate verified for {host}"))
        except (OSError, ssl.SSLError) as exc:
            checks.append(Check("tls", False, f"{host}:{port}: {exc}"))
    return checks


class Sender(threading.Thread):
    """Drains one forwarder's outbox (see the module docstring). ``wake()`` after a log commit; ``finish()``
    at the end of a run waits up to ``drain_s`` for the backlog to empty, then stops the forwarder."""

    def __init__(
        self,
        forwarder: Forwarder,
        log_dir: Path,
        ring: KeyRing,
        device_id: str,
        retry_max_s: float = 30.0,
        idle_s: float = 1.0,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        super().__init__(name=f"forward-{forwarder.name}", daemon=True)
        self.forwarder = forwarder
        self.log_dir = log_dir
        self.ring = ring
        self.device_id = device_id
        self.retry_max_s = retry_max_s
        self.idle_s = idle_s
        self.on_event = on_event
        self.backlog = 0
        self.delivered = 0
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._drained = threading.Event()
        self._outbox: Outbox | None = None

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> None:
        try:
            self.forwarder.start()
        except Exception as exc:  # a forwarder that cannot start is retried by its own client, reported here
            self._error(f"start failed: {exc}")
        backoff = BACKOFF_START_S
        while not self._halt.is_set():
            try:
                progressed, waiting = self._step()
            except DeliveryError as exc:
                self._error(str(exc))
                self._sleep(backoff)
                backoff = min(self.retry_max_s, backoff * 2)
                continue
            except Exception as exc:  # the log unavailable (disk full at start), a row that fails authentication
                self._error(f"outbox: {type(exc).__name__}: {exc}")
                self._close_outbox()
                self._sleep(backoff)
                backoff = min(self.retry_max_s, backoff * 2)
                continue
            backoff = BACKOFF_START_S
            if not waiting:
                self._drained.set()
            if not progressed:
                self._sleep(self.idle_s)
        self._close_outbox()

    def _sleep(self, seconds: float) -> None:
        self._safe_tick()
        self._wake.wait(seconds)
        self._wake.clear()

    def _safe_tick(self) -> None:
        try:
            self.forwarder.tick()
        except Exception as exc:  # a heartbeat that fails is retried at the next tick
            _log.debug("%s: tick failed: %s", self.forwarder.name, exc)

    def _error(self, text: str) -> None:
        if text != self.last_error:
            _log.warning("forward %s: %s (retrying)", self.forwarder.name, text)
        self.last_error = text

    def _close_outbox(self) -> None:
        if self._outbox is not None:
            try:
                self._outbox.close()
            finally:
                self._outbox = None

    def _step(self) -> tuple[bool, int]:
        """Deliver what is pending, in order; (whether anything moved, rows still waiting)."""
        if self._outbox is None:
            self._outbox = Outbox.open(self.log_dir, self.ring)
        outbox = self._outbox
        rows, lost = outbox.pending(self.forwarder.name)
        if lost:
            _log.warning(
                "forward %s: %d log rows were purged (quota/retention) before delivery", self.forwarder.name, lost
            )
        self.backlog = len(rows)
        if not rows:
            self._safe_tick()
            return False, 0
        self._drained.clear()
        done_through, delivered = None, 0
        try:
            for row in rows:
                event = event_from_log(row.record, id=outbox.event_id(row.seq), device_id=self.device_id, time=row.time)
                if event is not None and self.forwarder.wants(event):
                    if done_through is not None:  # skipped rows before this one: move the mark first
                        outbox.mark(self.forwarder.name, done_through, delivered)
                        done_through, delivered = None, 0
                    self.forwarder.deliver(event)
                    outbox.mark(self.forwarder.name, row.seq, 1)
                    self.delivered += 1
                    self.backlog -= 1
                    self.last_error = None
                    if self.on_event is not None:
                        self.on_event(event)
                else:
                    done_through = row.seq
                    self.backlog -= 1
                self._safe_tick()
                if self._halt.is_set():
                    break
        finally:
            if done_through is not None:
                outbox.mark(self.forwarder.name, done_through, delivered)
        return True, self.backlog

    def finish(self, drain_s: float) -> bool:
        """Wait up to ``drain_s`` for the outbox to drain, then stop; True when it drained."""
        self.wake()
        deadline = time.monotonic() + drain_s
        drained = False
        while time.monotonic() < deadline and self.is_alive():
            self._drained.clear()
            self.wake()
            if self._drained.wait(min(0.5, max(0.0, deadline - time.monotonic()))) and self.backlog == 0:
                drained = True
                break
        self._halt.set()
        self.wake()
        self.join(10.0)
        try:
            self.forwarder.stop()
        except Exception as exc:  # closing a connection must never fail the run's end
            _log.debug("%s: stop failed: %s", self.forwarder.name, exc)
        return drained
