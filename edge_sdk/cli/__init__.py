"""The ``edge-sdk`` command line.

Each subcommand is a module with ``add_arguments(parser)`` and ``run(args) -> int``, listed in
COMMANDS. Only the chosen subcommand's module is imported, so ``edge-sdk --help`` and the device
commands never import workstation packages (torch, TensorFlow, NNCF) that ``export`` needs.

Output: what a command produces goes to stdout (with ``--json``: only JSON, one object or JSON lines);
everything for the person watching (progress, notices, warnings, errors) goes to stderr. Library code logs
(``logging``) and warns (``warnings``); :func:`main` shows both on stderr: ``-q`` only warnings and errors,
``-v`` debug lines too.

Exit codes (:data:`EXIT_CODES`): 0 success; 1 the command ran but its result is a failure (a monitor that
faulted or ended without a signal, a log that fails verification, a doctor check that failed, ...); 2 one
``error: ...`` line for bad input or a package that is not installed; 130 on Ctrl-C; 141 (128 + SIGPIPE, like
other Unix tools) quietly when the reader of stdout went away (``edge-sdk log export ... | head -1``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from edge_sdk.errors import EXTRA_OF_PACKAGE, EdgeSdkError, install_hint
from edge_sdk.targets import FORMATS
from edge_sdk.version import __version__


@dataclass(frozen=True)
class Command:
    """A subcommand: its module and help, and the extra that installs what it needs beyond the base install."""

    module: str
    help: str
    extra: str | None = None


COMMANDS: dict[str, Command] = {
    "predict": Command("edge_sdk.cli.predict", "run a model on face images and print every head"),
    "analyze": Command("edge_sdk.cli.analyze", "videos and image folders -> a per-frame, per-face table (csv/parquet)"),
    "card": Command(
        "edge_sdk.cli.card", "show or validate a model card against its model file; 'card init MODEL' drafts one"
    ),
    "run": Command("edge_sdk.cli.run", "the bedside/kiosk loop: capture, detect, infer, score pain, log"),
    "log": Command("edge_sdk.cli.log", "the private result log: verify, export, summary, purge"),
    "models": Command("edge_sdk.cli.models", "list, pull and locate public models (sha256-pinned)"),
    "doctor": Command("edge_sdk.cli.doctor", "check what this device has and what will run"),
    "benchmark": Command("edge_sdk.cli.benchmark", "latency/throughput of a target's artifacts on this device"),
    "pick": Command(
        "edge_sdk.cli.pick", "time an export folder's artifacts here and record the fastest for `run --model DIR`"
    ),
    "station": Command(
        "edge_sdk.cli.station",
        "the ward station: every bed's state, PSPI trend and alerts on one web page (MQTT subscriber)",
        extra="station",
    ),
    "export": Command(
        "edge_sdk_export.cli",
        "prune + quantize a model for jetson/rpi/openvino/cpu (workstation; needs edge-sdk[export])",
        extra="export",
    ),
}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-sdk",
        description="On-device facial behaviour analysis: action units, expression, valence/arousal, PSPI pain.",
        epilog="exit codes: "
        + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())
        + ". Results go to stdout (--json: JSON only), messages to stderr.",
    )
    parser.add_argument("--version", action="version", version=f"edge-sdk {__version__}")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", dest="log_quiet", action="store_true", help="stderr: only warnings and errors")
    talk.add_argument("-v", "--verbose", dest="log_verbose", action="store_true", help="stderr: debug lines too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, entry in COMMANDS.items():
        p = sub.add_parser(name, help=entry.help, description=entry.help)
        if name == command:
            _load(entry).add_arguments(p)
    return parser


#: Exit status when stdout's reader went away: 128 + SIGPIPE, what a shell reports for a tool killed by it.
EXIT_BROKEN_PIPE = 141
#: Every exit status of ``edge-sdk`` and what it means (README, ``edge-sdk --help``).
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "the command ran but found a problem (run: a monitor fault or no signal; export: a failed gate; log verify: "
    "failures or gaps; doctor: a blocking check; pick: nothing to choose)",
    2: "bad input or a missing package: one 'error: ...' line on stderr, never a traceback",
    130: "interrupted (Ctrl-C)",
    EXIT_BROKEN_PIPE: "stdout's reader went away early (... | head): a quiet stop",
}
#: Top-level packages of this project: a missing one is a broken install, not a missing extra.
OWN_PACKAGES = ("edge_sdk", "edge_sdk_export")


def _missing_package(entry: Command, exc: ImportError) -> EdgeSdkError:
    """The error for a package ``entry`` needs that is not installed, naming what to install: a backend's
    runtime its format's extra, else the command's extra, else the package itself."""
    top = (exc.name or "").split(".")[0]
    runtime = next((f.install_hint for f in FORMATS.values() if f.requires == top), None)
    if runtime:
        hint = f"install it with: {runtime}"
    elif top in EXTRA_OF_PACKAGE:
        hint = f"install it with: {install_hint(top)}"
    elif entry.extra:
        hint = f"install it with: pip install 'edge-sdk[{entry.extra}]'"
    else:
        hint = "install it, or reinstall edge-sdk with the extra that provides it (README, 'Extras')"
    name = f"the '{top}' package" if top else "a package"
    return EdgeSdkError(f"this command needs {name}, which is not installed ({exc}); {hint}")


def _load(entry: Command):  # -> module with add_arguments/run
    try:
        return importlib.import_module(entry.module)
    except ImportError as exc:
        raise _missing_package(entry, exc) from None


def _reader_gone() -> int:
    """stdout's reader closed the pipe: send what is still buffered nowhere, exit quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush at exit must not fail again
    os.close(devnull)
    return EXIT_BROKEN_PIPE


class _ShowWarning:
    """``warnings.showwarning`` for one command: each warning text once; this project's warnings (classes
    defined in ``edge_sdk``, e.g. ``SyntheticWeightsWarning``) as one ``warning: ...`` line through the
    ``edge_sdk`` logger (stderr, also with ``-q``), others as Python shows them."""

    def __init__(self) -> None:
        self.seen: set[tuple[type[Warning], str]] = set()
        self.python = warnings.showwarning

    def __call__(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        key = (category, str(message))
        if key in self.seen:
            return
        self.seen.add(key)
        if category.__module__.startswith("edge_sdk."):
            logging.getLogger("edge_sdk").warning("warning: %s", message)
        else:
            self.python(message, category, filename, lineno, file, line)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log records as plain lines on whatever ``sys.stderr`` is when each record comes (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


@contextmanager
def stderr_messages(quiet: bool = False, verbose: bool = False) -> Iterator[None]:
    """For one command: the ``edge_sdk`` loggers' records as plain lines on stderr (INFO and up; ``quiet``:
    WARNING and up; ``verbose``: DEBUG and up), and each user warning once (the synthetic-weights warning of
    every model load shows one ``warning: ...`` line)."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("edge_sdk")
    previous_level, previous_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False  # a host's root handlers would show each line twice
    with warnings.catch_warnings():
        warnings.filterwarnings("always", category=UserWarning)  # (once per text: _ShowWarning)
        warnings.showwarning = _ShowWarning()
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(previous_level)
            logger.propagate = previous_propagate


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(command if command in COMMANDS else None)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        with stderr_messages(args.log_quiet, args.log_verbose):
            try:
                code = int(_load(COMMANDS[args.command]).run(args) or 0)
            except ModuleNotFoundError as exc:  # a lazy import deep inside the command (export's torch, ...)
                if (exc.name or "").split(".")[0] in OWN_PACKAGES:
                    raise  # a bug in this project, not a missing extra: keep the traceback
                raise _missing_package(COMMANDS[args.command], exc) from None
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except EdgeSdkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _reader_gone()
    except KeyboardInterrupt:
        return 130


def benchmark_main(argv: Sequence[str] | None = None) -> int:
    """The ``benchmark`` console script: the same as ``edge-sdk benchmark``."""
    return main(["benchmark", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
