"""The ward station's settings: a frozen dataclass checked once, each bad value one error naming its flag.

Rules: the broker URL is ``mqtts://`` (TLS; ``mqtt://`` only with ``insecure``, for tests and labs); a
password needs a username; the web page binds to loopback unless told otherwise, and any other address
needs a users file (login) and the station's own TLS certificate and key (a password never crosses the
network in the clear).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edge_sdk.errors import InputError
from edge_sdk.forward.base import DEFAULT_PORTS
from edge_sdk.forward.messages import DEFAULT_TOPIC, MessageError, subscription

DEFAULT_LISTEN = "127.0.0.1:8080"


@dataclass(frozen=True)
class BrokerSettings:
    """Where the beds publish: host, port, TLS and the station's broker login."""

    host: str
    port: int
    tls: bool
    ca_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    topic: str = DEFAULT_TOPIC
    client_id: str = "edge-sdk-station"


@dataclass(frozen=True)
class WebSettings:
    """The ward page's listener and login."""

    host: str = "127.0.0.1"
    port: int = 8080
    users_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def login_required(self) -> bool:
        return self.users_file is not None


@dataclass(frozen=True)
class StationSettings:
    broker: BrokerSettings
    web: WebSettings


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def parse_listen(text: str, flag: str = "--listen") -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"{flag} {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host, int(port)


def parse_broker_url(url: str, *, insecure: bool = False, flag: str = "--mqtt") -> tuple[str, int, bool]:
    """``mqtts://host[:port]`` -> (host, port, tls). ``mqtt://`` (no TLS) only with ``insecure``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InputError(f"{flag} {url!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise InputError(f"{flag} {url!r}: expected mqtts://HOST[:PORT] (or mqtt://HOST[:PORT] with --insecure)")
    if parts.username or parts.password:
        raise InputError(f"{flag} {url!r}: put no credentials in the URL; use --username and --password-file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InputError(f"{flag} {url!r}: expected no path or query; the topic is set with --topic")
    if parts.scheme == "mqtt" and not insecure:
        raise InputError(
            f"{flag} {url!r}: mqtt:// sends passwords and alerts unencrypted; use mqtts:// (or --insecure for a lab)"
        )
    return parts.hostname, port or DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts"


def _readable_file(path: Path | None, flag: str) -> Path | None:
    if path is None:
        return None
    if not path.is_file():
        raise InputError(f"{flag} {path}: no such file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise InputError(f"{flag} {path}: cannot be read ({exc.strerror})") from None
    return path


def default_client_id() -> str:
    """``edge-sdk-station-HOST-PID``: two stations on one broker must not share a client id (the broker would
    drop the first whenever the second connects)."""
    return f"edge-sdk-station-{socket.gethostname()}-{os.getpid()}"[:64]


def build_settings(
    *,
    mqtt: str,
    listen: str = DEFAULT_LISTEN,
    ca_file: Path | None = None,
    username: str | None = None,
    password_file: Path | None = None,
    users_file: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    topic: str = DEFAULT_TOPIC,
    insecure: bool = False,
    client_id: str | None = None,
) -> StationSettings:
    """Checked :class:`StationSettings` from the ``edge-sdk station`` flags (each error names its flag)."""
    host, port, tls = parse_broker_url(mqtt, insecure=insecure)
    if ca_file is not None and not tls:
        raise InputError(f"--ca-file {ca_file}: given, but --mqtt {mqtt!r} is not mqtts://")
    if password_file is not None and not username:
        raise InputError(f"--password-file {password_file}: given without --username")
    try:
        subscription("events", topic)
        if "{device_id}" not in topic:
            raise MessageError("no {device_id}")
    except MessageError:
        raise InputError(f"--topic {topic!r}: expected a template with {{device_id}}, e.g. {DEFAULT_TOPIC!r}") from None
    broker = BrokerSettings(
        host,
        port,
        tls,
        _readable_file(ca_file, "--ca-file"),
        username or None,
        _readable_file(password_file, "--password-file"),
        topic,
        client_id or default_client_id(),
    )
    web_host, web_port = parse_listen(listen)
    if (tls_cert is None) != (tls_key is None):
        raise InputError("--tls-cert and --tls-key: give both (the station's own HTTPS certificate and key) or neither")
    web = WebSettings(
        web_host,
        web_port,
        _readable_file(users_file, "--users-file"),
        _readable_file(tls_cert, "--tls-cert"),
        _readable_file(tls_key, "--tls-key"),
    )
    if not web.loopback:
        if web.users_file is None:
            raise InputError(
                f"--listen {listen}: not a loopback address, so the page needs a login: give --users-file "
                "(create it with 'edge-sdk station passwd --users-file FILE NAME')"
            )
        if web.tls_cert is None:
            raise InputError(
                f"--listen {listen}: not a loopback address, so logins need HTTPS: give --tls-cert and --tls-key"
            )
    return StationSettings(broker, web)
