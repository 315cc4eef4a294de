"""Runs the station: the MQTT client in its own thread, the page under uvicorn in the main thread."""

from __future__ import annotations

import logging
import signal
import threading

from edge_sdk.errors import EdgeSdkError
from edge_sdk.station.settings import StationSettings
from edge_sdk.station.users import load_users
from edge_sdk.station.ward import Ward

log = logging.getLogger(__name__)

#: Seconds uvicorn waits for open streams on shutdown before closing them.
SHUTDOWN_GRACE_S = 2


def serve(settings: StationSettings) -> None:
    """Subscribe, serve the page, return after SIGINT/SIGTERM. EdgeSdkError when the port cannot be bound."""
    import uvicorn

    from edge_sdk.station.subscriber import StationClient
    from edge_sdk.station.web import build_app

    users = load_users(settings.web.users_file) if settings.web.users_file else None
    ward = Ward()
    client = StationClient(settings.broker, ward)
    stopping = threading.Event()
    app = build_app(settings.web, ward, client, users, should_stop=stopping.is_set)
    config = uvicorn.Config(
        app,
        host=settings.web.host,
        port=settings.web.port,
        ssl_certfile=str(settings.web.tls_cert) if settings.web.tls_cert else None,
        ssl_keyfile=str(settings.web.tls_key) if settings.web.tls_key else None,
        log_config=None,  # the CLI's logging
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            stopping.set()  # end the page streams now, not after the grace period
            super().handle_exit(sig, frame)
            if sig == signal.SIGTERM:  # a service stop is a clean exit (0), not death by the signal re-raised
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list) and signal.SIGTERM in captured:
                    captured.remove(signal.SIGTERM)

    server = Server(config)
    client.start()
    scheme = "https" if settings.web.tls_cert else "http"
    log.info(
        "ward page on %s://%s:%d/ (%s)",
        scheme,
        settings.web.host,
        settings.web.port,
        "login required" if users else "loopback, no login",
    )
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind; it logged why
        pass
    finally:
        stopping.set()
        client.stop()
    if not server.started:
        raise EdgeSdkError(
            f"--listen {settings.web.host}:{settings.web.port}: could not serve the page there "
            "(address in use or not permitted; see the log above)"
        )
