"""matplotlib for the PNGs edge-sdk writes (session timelines, benchmark plots): files only, an optional extra."""

from __future__ import annotations

from typing import Any

from edge_sdk.errors import missing_extra


def pyplot(needed_for: str) -> Any:
    """``matplotlib.pyplot`` on the Agg backend (never needs a display).

    Raises :class:`~edge_sdk.errors.MissingExtraError` naming ``edge-sdk[data]`` and ``needed_for`` (e.g.
    ``"the benchmark plot (--plot)"``) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise missing_extra("matplotlib", needed_for) from None
    return plt
