"""The ward station: subscribes to every bed's events and state over MQTT and serves one ward page.

``edge-sdk station --mqtt mqtts://broker:8883 ...`` (:mod:`edge_sdk.cli.station`). Parts:

* :mod:`~edge_sdk.station.ward` - the in-memory ward model (per bed: state, PSPI trend of the last hour,
  silence, active alerts; events deduplicated by id). No extra packages.
* :mod:`~edge_sdk.station.subscriber` - the MQTT client (paho-mqtt): feeds the ward, publishes acks.
* :mod:`~edge_sdk.station.web` and :mod:`~edge_sdk.station.page` - the page (Starlette + uvicorn, server-sent
  events, plain HTML/JS, no build step).
* :mod:`~edge_sdk.station.users` - the users file (salted scrypt) for the login.
* :mod:`~edge_sdk.station.settings` - the checked settings (loopback unless told otherwise; beyond loopback
  a login and the station's own TLS are required).

The wire schema is :mod:`edge_sdk.forward.messages` (shared with the beds). Every module imports on a base
install; paho-mqtt, starlette and uvicorn (``pip install 'edge-sdk[station]'``) are imported when used.
"""

from __future__ import annotations

from edge_sdk.station.settings import BrokerSettings, StationSettings, WebSettings, build_settings
from edge_sdk.station.ward import Ward

__all__ = ["BrokerSettings", "StationSettings", "Ward", "WebSettings", "build_settings", "serve"]


def serve(settings: StationSettings) -> None:
    """Run the station until SIGINT/SIGTERM (see :func:`edge_sdk.station.server.serve`)."""
    from edge_sdk.station.server import serve as _serve

    _serve(settings)
