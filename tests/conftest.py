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
