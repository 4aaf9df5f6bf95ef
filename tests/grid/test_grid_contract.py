"""Runs the Grid contract suite (tests/support/grid_contract.py) against every adapter factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.grid_contract import *  # noqa: F401,F403  (the contract's test functions)
from tests.support.grid_factories import FACTORIES, GridSetup


@pytest.fixture(params=sorted(FACTORIES))
def contract_grid(request: pytest.FixtureRequest, tmp_path: Path) -> GridSetup:
    root = tmp_path / "contract"
    root.mkdir()
    return FACTORIES[request.param](root)
