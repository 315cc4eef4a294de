"""Show one library logger's records on stderr for the length of a command (library code logs, the CLI shows)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def log_lines(name: str, prefix: str = "", level: int = logging.INFO) -> Iterator[None]:
    """Records of logger ``name`` at ``level`` and up go to stderr as ``prefix + message``; restored after.

    >>> with log_lines("edge_sdk.example", "[example] "):
    ...     logging.getLogger("edge_sdk.example").info("shown on stderr")
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(prefix + "%(message)s"))
    logger = logging.getLogger(name)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
