"""Flags -> settings: every settings flag's dest names a real field or config key (a renamed field would
otherwise make its flag silently do nothing), and a flag left off overrides nothing."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from edge_sdk.cli.flags import add_setting, flags_given, settings_from_args
from edge_sdk.pipeline.config import OPTIONS


def _dests(add_arguments) -> set[str]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return {action.dest for action in parser._actions} - {"help"}


def test_run_flags_are_config_keys() -> None:
    from edge_sdk.cli.run import add_arguments

    assert _dests(add_arguments) - set(OPTIONS) == {"config", "json"}


def test_benchmark_flags_cover_bench_config() -> None:
    from edge_sdk.bench.run import BenchConfig
    from edge_sdk.cli.benchmark import add_arguments

    assert {f.name for f in fields(BenchConfig)} <= _dests(add_arguments)


def test_export_flags_cover_export_options() -> None:
    from edge_sdk_export.cli import add_arguments
    from edge_sdk_export.pipeline import ExportOptions

    computed = {"gates", "progress", "equalize"}  # from --gate, --no-progress, --no-equalize
    unset: set[str] = set()
    assert {f.name for f in fields(ExportOptions)} - _dests(add_arguments) == computed | unset


@dataclass(frozen=True)
class _Options:
    runs: int = 500
    name: str = "x"
    tags: tuple[str, ...] = ()


def test_flags_left_off_keep_the_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_setting(parser, "--runs", "runs", type=int)
    add_setting(parser, "--tag", "tags", action="append")
    parser.add_argument("--quiet", action="store_true")
    assert "--tag TAG" in parser.format_usage()  # the flag's own metavar, not the field's
    args = parser.parse_args(["--runs", "0"])
    assert flags_given(args, ["runs", "tags", "quiet", "missing"]) == {"runs": 0, "quiet": False}
    assert settings_from_args(_Options, args) == _Options(runs=0)
    args = parser.parse_args(["--tag", "a", "--tag", "b"])
    assert settings_from_args(_Options, args, tags=tuple(args.tags), name="y") == _Options(500, "y", ("a", "b"))
