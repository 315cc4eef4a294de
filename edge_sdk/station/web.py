"""The ward page's ASGI app (Starlette, served by uvicorn): one page, a JSON snapshot, a server-sent-events
stream and the acknowledge endpoint.

Login: when the station has a users file (always when it listens beyond loopback, see
:mod:`edge_sdk.station.settings`) every route but ``/login`` needs a session: a random token in an
``HttpOnly; SameSite=Strict`` cookie (``Secure`` under the station's TLS), kept in memory for
:data:`SESSION_S`. ``/api/ack`` accepts only ``application/json`` POSTs (a cross-site form cannot send
one) from a session. Responses carry a CSP with a per-response nonce; nothing loads from elsewhere.

Starlette is imported inside :func:`build_app` (the ``station`` extra).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from edge_sdk.station.page import login_page, ward_page
from edge_sdk.station.settings import WebSettings
from edge_sdk.station.users import verify_password
from edge_sdk.station.ward import Ward

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from edge_sdk.station.subscriber import StationClient

log = logging.getLogger(__name__)

COOKIE = "edge_sdk_station"
SESSION_S = 12 * 3600.0
#: The stream sends the ward at least this often (the seconds since each heartbeat move on) ...
STREAM_EVERY_S = 1.0
#: ... and checks for changes this often.
STREAM_POLL_S = 0.2
FAILED_LOGIN_DELAY_S = 1.0
MAX_FAILED_LOGINS = 5  # per client address within LOGIN_WINDOW_S; then every login attempt gets 429 until it ends
LOGIN_WINDOW_S = 300.0
_DUMMY_HASH = "scrypt:16384:8:1:AAAAAAAAAAAAAAAAAAAAAA==:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


class LoginThrottle:
    """Failed logins per client address; an address with :data:`MAX_FAILED_LOGINS` failures in the last
    :data:`LOGIN_WINDOW_S` seconds is refused (without checking the password) until the oldest one ages out."""

    def __init__(self, limit: int = MAX_FAILED_LOGINS, window_s: float = LOGIN_WINDOW_S) -> None:
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, list[float]] = {}

    def _recent(self, address: str, now: float) -> list[float]:
        recent = [t for t in self._failures.get(address, []) if now - t < self.window_s]
        if recent:
            self._failures[address] = recent
        else:
            self._failures.pop(address, None)
        return recent

    def blocked(self, address: str, now: float | None = None) -> bool:
        return len(self._recent(address, time.monotonic() if now is None else now)) >= self.limit

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._failures[address] = [*self._recent(address, now), now]

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)


class Sessions:
    """Session tokens in memory (a restart signs everyone out)."""

    def __init__(self, lifetime_s: float = SESSION_S) -> None:
        self.lifetime_s = lifetime_s
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def create(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}
            self._tokens[token] = (user, now + self.lifetime_s)
        return token

    def user(self, token: str | None) -> str | None:
        if not token:
            return None
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None or entry[1] <= time.monotonic():
                self._tokens.pop(token, None)
                return None
            return entry[0]

    def end(self, token: str | None) -> None:
        with self._lock:
            self._tokens.pop(token or "", None)


def _csp(nonce: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
            "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def build_app(
    web: WebSettings,
    ward: Ward,
    client: StationClient,
    users: dict[str, str] | None,
    *,
    should_stop: Callable[[], bool] = lambda: False,
) -> Starlette:
    """The Starlette app of the ward page. ``users`` None: no login (loopback only, checked by the settings).
    ``should_stop`` ends the open streams (the server is shutting down)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
    from starlette.routing import Route

    sessions = Sessions()
    throttle = LoginThrottle()
    secure = web.tls_cert is not None
    anonymous = f"station@{socket.gethostname()} (no login)"

    def current_user(request: Request) -> str | None:
        if users is None:
            return anonymous
        return sessions.user(request.cookies.get(COOKIE))

    def snapshot() -> dict[str, Any]:
        snap = ward.snapshot()
        snap["broker"] = client.status()
        return snap

    async def page(request: Request) -> Response:
        user = current_user(request)
        if user is None:
            return RedirectResponse("login", status_code=303)
        nonce = secrets.token_urlsafe(16)
        return HTMLResponse(ward_page(nonce, user if users is not None else None), headers=_csp(nonce))

    async def login(request: Request) -> Response:
        nonce = secrets.token_urlsafe(16)
        if users is None:
            return RedirectResponse(".", status_code=303)
        if request.method == "GET":
            return HTMLResponse(login_page(nonce), headers=_csp(nonce))
        # the form is urlencoded (the page's own form); parsed here, so no multipart package is needed
        address = request.client.host if request.client else "?"
        if throttle.blocked(address):
            log.warning("login refused for %s: %d failed logins within %g s", address, throttle.limit, LOGIN_WINDOW_S)
            message = "Too many failed logins from this address; try again in a few minutes."
            return HTMLResponse(login_page(nonce, message), status_code=429, headers=_csp(nonce))
        body = (await request.body())[:4096].decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        name, password = form.get("user", ""), form.get("password", "")
        stored = users.get(name)
        # the scrypt check runs for unknown names too (same time either way), off the event loop
        ok = await asyncio.to_thread(verify_password, password, stored or _DUMMY_HASH)
        if not (ok and stored):
            log.warning("failed login for %r from %s", name, address)
            throttle.failed(address)
            await asyncio.sleep(FAILED_LOGIN_DELAY_S)
            return HTMLResponse(login_page(nonce, "Wrong user or password."), status_code=401, headers=_csp(nonce))
        log.info("login: %s", name)
        throttle.succeeded(address)
        response = RedirectResponse(".", status_code=303)
        response.set_cookie(
            COOKIE, sessions.create(name), max_age=int(SESSION_S), httponly=True, samesite="strict", secure=secure
        )
        return response

    async def logout(request: Request) -> Response:
        sessions.end(request.cookies.get(COOKIE))
        response = RedirectResponse("login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    def denied() -> JSONResponse:
        return JSONResponse({"error": "sign in first"}, status_code=401)

    async def api_ward(request: Request) -> Response:
        if current_user(request) is None:
            return denied()
        return JSONResponse(snapshot(), headers={"Cache-Control": "no-store"})

    async def stream(request: Request) -> Response:
        if current_user(request) is None:
            return denied()

        async def events():
            version, sent = -1, 0.0
            while not should_stop():
                now = time.monotonic()
                if ward.version != version or now - sent >= STREAM_EVERY_S:
                    version, sent = ward.version, now
                    yield f"data: {json.dumps(snapshot(), separators=(',', ':'))}\n\n"
                await asyncio.sleep(STREAM_POLL_S)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def ack(request: Request) -> Response:
        from edge_sdk.station.subscriber import AckError

        user = current_user(request)
        if user is None:
            return denied()
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "expected application/json"}, status_code=415)
        try:
            body = await request.json()
            device_id, event_id = body["device_id"], body["event_id"]
            if not isinstance(device_id, str) or not isinstance(event_id, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "expected {device_id, event_id} strings"}, status_code=400)
        if not ward.has_alert(device_id, event_id):
            return JSONResponse({"error": f"no active alert {event_id} on {device_id}"}, status_code=404)
        try:
            ack_id = await asyncio.to_thread(client.acknowledge, device_id, event_id, user)
        except AckError as exc:
            log.error("ack of %s on %s failed: %s", event_id, device_id, exc)
            return JSONResponse({"error": str(exc)}, status_code=503)
        ward.ack_sent(device_id, event_id, user)
        return JSONResponse({"ack_id": ack_id, "by": user}, status_code=202)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)  # no icon, and no 404 in the browser's console

    routes = [
        Route("/", page),
        Route("/favicon.ico", favicon),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/ward", api_ward),
        Route("/api/stream", stream),
        Route("/api/ack", ack, methods=["POST"]),
    ]
    return Starlette(routes=routes)
