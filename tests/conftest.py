"""Shared fixtures: paths to ../shared data (CI has it beside the checkout)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_file(relative: str) -> Path:
    """A file under ../shared; fails (never skips) when missing, since CI always provides it."""
    path = SHARED / relative
    if not path.is_file():
        pytest.fail(f"{path} is missing: tests read their data from ../shared beside the checkout")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: tests read their data from ../shared beside the checkout")
    return SHARED


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Every test log names the CPU and the int8 kernels it exercised (INT8 results depend on them)."""
    from tests.isa import header_lines

    return header_lines()


def pytest_sessionstart(session: pytest.Session) -> None:
    # -q hides report headers; the CPU line must be in every log (CI runs with -q).
    config = session.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and config.get_verbosity() < 0:
        from tests.isa import header_lines

        for line in header_lines():
            reporter.write_line(line)
