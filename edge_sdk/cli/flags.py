"""Command-line flags -> settings dataclasses: the one way every command turns flags into settings.

A settings flag's argparse ``dest`` is the field it sets: a dataclass field name (``runs``,
``distill_steps``), or the flat config key for ``edge-sdk run`` (``detector.scale``, ``log.key_file``;
see :data:`edge_sdk.pipeline.config.OPTIONS`). A flag left off is ``None`` and overrides nothing, so the
TOML file (``run``) or the dataclass default stands::

    add_setting(parser, "--detect-scale", "detector.scale", type=float, help="...")
    config = load_config(args.config, flags_given(args, OPTIONS))        # edge-sdk run
    options = settings_from_args(BenchConfig, args, models=...)         # computed fields by keyword

Bad values are reported where they are checked (argparse types, config validation, the dataclass), naming
the flag or key, as before.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import fields
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class ArgumentContainer(Protocol):
    """A parser or an argument group (mutually exclusive or not)."""

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> argparse.Action: ...


def add_setting(parser: ArgumentContainer, flag: str, key: str, **kwargs: Any) -> argparse.Action:
    """``parser.add_argument(flag, **kwargs)`` whose value lands on settings key ``key``, None when left off.

    The help text shows the flag's own name as its metavar (``--detect-scale DETECT_SCALE``), not the key.
    """
    kwargs.setdefault("default", None)
    if kwargs.get("action") in (None, "store", "append") and "choices" not in kwargs:
        kwargs.setdefault("metavar", flag.lstrip("-").replace("-", "_").upper())
    return parser.add_argument(flag, dest=key, **kwargs)


def flags_given(args: argparse.Namespace, keys: Iterable[str]) -> dict[str, Any]:
    """``{key: value}`` for each of ``keys`` that is a flag dest of ``args`` and was given (not None)."""
    return {key: value for key in keys if (value := getattr(args, key, None)) is not None}


def settings_from_args(cls: type[T], args: argparse.Namespace, **computed: Any) -> T:
    """A ``cls`` (settings dataclass) from the flags whose dest is one of its fields; flags left off keep the
    field's default. ``computed`` sets fields whose flag needs parsing first (it wins over a same-named flag)."""
    names = [f.name for f in fields(cls) if f.init]  # type: ignore[arg-type]
    return cls(**{**flags_given(args, names), **computed})
