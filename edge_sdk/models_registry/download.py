"""HTTP(S) download into a ``.part`` file: retried, resumed with Range requests, never left half-done.

A transfer that ends before its Content-Length is a truncation (``http.client`` does not report it
for chunked reads, so it is checked here) and is retried from where it stopped when the server
honours ``Range``. When every attempt fails the ``.part`` file is deleted and one ArtifactError
says what happened.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from edge_sdk.errors import ArtifactError
from edge_sdk.version import __version__

_CHUNK = 1 << 16
# HTTP statuses worth retrying; every other 4xx/5xx is final.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
AIRGAP_HINT = "on a device without network, copy the file over and use `edge-sdk models pull NAME --from DIR`"


class _Retryable(Exception):
    """A transient failure: try again (resuming)."""


class _Final(Exception):
    """A failure that retrying will not fix."""


def _attempt(url: str, part: Path, timeout_s: float, progress: Callable[[int, int | None], None] | None) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"edge-sdk/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # our partial file is not a prefix the server recognises: restart
            part.unlink()
            raise _Retryable(f"HTTP 416 resuming at byte {have}") from None
        reason = f"HTTP {exc.code} {exc.reason}"
        raise (_Retryable if exc.code in RETRYABLE_STATUS else _Final)(reason) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        raise _Retryable(f"cannot connect ({getattr(exc, 'reason', exc)})") from None
    with response:
        resumed = response.status == 206
        if not resumed:
            have = 0  # server ignored Range (or nothing to resume): start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None and length.isdigit() else None
        received = have
        try:
            with open(part, "ab" if resumed else "wb") as out:
                while block := response.read(_CHUNK):
                    out.write(block)
                    received += len(block)
                    if progress is not None:
                        progress(received, total)
        except (http.client.HTTPException, TimeoutError, ConnectionError, OSError) as exc:
            raise _Retryable(f"transfer interrupted after {received} bytes ({type(exc).__name__}: {exc})") from None
    if total is not None and received < total:
        raise _Retryable(f"truncated transfer: got {received} of {total} bytes")


def download(
    url: str,
    part: Path,
    *,
    timeout_s: float = 30.0,
    attempts: int = 4,
    backoff_s: float = 2.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> None:
    """Download ``url`` into ``part``, retrying transient failures and resuming partial transfers.

    On failure ``part`` is removed and ArtifactError names the URL and the last reason.
    """
    reason = "no attempt made"
    try:
        for attempt in range(1, attempts + 1):
            try:
                _attempt(url, part, timeout_s, progress)
                return
            except _Retryable as exc:
                reason = str(exc)
                if attempt < attempts:
                    time.sleep(backoff_s * attempt)
            except _Final as exc:
                reason = str(exc)
                break
        else:
            reason = f"{reason} (after {attempts} attempts)"
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.unlink(missing_ok=True)
    raise ArtifactError(f"download of {url} failed: {reason}; nothing was saved. {AIRGAP_HINT}")
