"""The ``edge-sdk`` command line.

Each subcommand is a module with ``add_arguments(parser)`` and ``run(args) -> int``, listed in
COMMANDS. Only the chosen subcommand's module is imported, so ``edge-sdk --help`` and the device
commands never import workstation packages (torch, TensorFlow, NNCF) that ``export`` needs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from edge_sdk.errors import EdgeSdkError
from edge_sdk.version import __version__


@dataclass(frozen=True)
class Command:
    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "predict": Command("edge_sdk.cli.predict", "run a model on face images and print every head"),
    "card": Command("edge_sdk.cli.card", "show or validate the model card of an artifact or card file"),
    "run": Command("edge_sdk.cli.run", "the bedside/kiosk loop: capture, detect, infer, score pain, log"),
    "log": Command("edge_sdk.cli.log", "the private result log: verify, export, summary, purge"),
    "models": Command("edge_sdk.cli.models", "list, pull and locate public models (sha256-pinned)"),
    "doctor": Command("edge_sdk.cli.doctor", "check what this device has and what will run"),
    "benchmark": Command("edge_sdk.cli.benchmark", "latency/throughput of a target's artifacts on this device"),
    "export": Command(
        "export.cli", "prune + quantize a model for jetson/rpi/openvino/cpu (workstation; needs edge-sdk[export])"
    ),
}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-sdk",
        description="On-device facial behaviour analysis: action units, expression, valence/arousal, PSPI pain.",
    )
    parser.add_argument("--version", action="version", version=f"edge-sdk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, entry in COMMANDS.items():
        p = sub.add_parser(name, help=entry.help, description=entry.help)
        if name == command:
            _load(entry).add_arguments(p)
    return parser


def _load(entry: Command):  # -> module with add_arguments/run
    try:
        return importlib.import_module(entry.module)
    except ImportError as exc:
        hint = "pip install 'edge-sdk[export]'" if entry.module.startswith("export") else "reinstall edge-sdk"
        raise EdgeSdkError(f"this command needs a package that is not installed ({exc}); {hint}") from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(command if command in COMMANDS else None)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return int(_load(COMMANDS[args.command]).run(args) or 0)
    except EdgeSdkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def benchmark_main(argv: Sequence[str] | None = None) -> int:
    """The ``benchmark`` console script: the same as ``edge-sdk benchmark``."""
    return main(["benchmark", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
