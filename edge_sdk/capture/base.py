"""The capture interface: every source yields :class:`Frame` objects the same way."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

# ``scheme://user:password@host`` (also mistyped ``scheme:/``): a URL's user info, up to the last '@' before the path.
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*:/+)[^/\s]*@")
# ``?user=admin&pwd=secret``: the value of a query/fragment parameter that names a credential.
_QUERY_CREDENTIALS = re.compile(
    r"(?i)([?&;#](?:user|username|usr|login|pwd|pass|passwd|password|token|access_token|api_key|apikey|key|auth"
    r"|secret)=)[^&;#\s]*"
)
# The log refuses strings over 256 characters: names and reasons made here stay well below.
MAX_TEXT = 200


def short(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to at most ``limit`` characters, ending with an ellipsis when it was longer."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced: ``rtsp://user:pass@cam/1`` -> ``rtsp://***@cam/1``,
    ``http://cam/s?user=admin&pwd=x`` -> ``http://cam/s?user=***&pwd=***`` (also password, token, key, auth).

    The one redaction for source names: :class:`FrameSource` names, capture events, status lines and the
    ``run_started`` event all pass through it, so a camera password never reaches a log or a terminal.
    """
    return _QUERY_CREDENTIALS.sub(r"\1***", _URL_CREDENTIALS.sub(r"\1***@", text))


@dataclass(frozen=True)
class Frame:
    """One captured image.

    ``image`` is BGR uint8 (the inference stream). ``timestamp`` is ``time.monotonic()`` when the
    frame was read. ``media_time`` is the position in a file (seconds) when the source is a file,
    so time windows over recorded video do not depend on how fast it is processed.
    ``display`` is an optional higher-resolution stream (picamera2 ``main``) for a preview.
    """

    image: np.ndarray
    timestamp: float
    index: int
    media_time: float | None = None
    display: np.ndarray | None = None
    decode_ms: float = 0.0  # time spent reading/decoding this frame (in the reader thread)

    @property
    def clock(self) -> float:
        """The time base for windows and alerts: media time for files, monotonic time otherwise."""
        return self.timestamp if self.media_time is None else self.media_time


@dataclass(frozen=True)
class RawRead:
    """What a source's ``read`` returns: an image (possibly corrupt) plus optional extras."""

    image: np.ndarray | None
    media_time: float | None = None
    display: np.ndarray | None = None


class EndOfStream(Exception):
    """Raised by ``FrameSource.read`` when a finite source (file, folder) has no more frames."""


class SourceLost(Exception):
    """Raised by ``FrameSource.read`` when a live source stopped delivering (unplugged, network)."""


class FrameSource(ABC):
    """A camera, stream, file or folder. ``name`` is what gets printed and logged (URL credentials redacted).

    ``open`` may raise :class:`SourceLost` (live sources are then retried with backoff) or an
    :class:`~edge_sdk.errors.InputError` (a path that does not exist). ``read`` returns one
    :class:`RawRead`; its image may be None or malformed (counted and skipped by the caller).
    """

    #: True for cameras and network streams: never queue frames, reconnect when lost.
    live: bool = False

    def __init__(self, name: str) -> None:
        # printed and logged (so cut to fit a log string); a source keeps its real address to itself
        self.name = short(redact_url(name))

    @abstractmethod
    def open(self) -> None:
        """Acquire the device/file."""

    @abstractmethod
    def read(self) -> RawRead:
        """Block until the next frame; raise EndOfStream or SourceLost."""

    @abstractmethod
    def close(self) -> None:
        """Release the device/file (safe to call twice)."""

    def describe(self) -> str:
        return self.name


def is_valid_image(image: object) -> bool:
    """True for a non-empty HxWx3 uint8 array (what the pipeline can use)."""
    return (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
        and image.shape[0] >= 8
        and image.shape[1] >= 8
    )
