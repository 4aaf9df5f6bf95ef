"""Fakes of the iRODS rule engine environment (callback, genquery, session_vars, irods_types).

They follow docs/irods-behaviour.md (tests/grid/test_fake_server_facts.py holds them to it) and are
backed by a LocalGrid catalog, so the rule-engine adapter and the rule entry points run in tests
exactly as the server would run them.
"""

from tests.fakes.irods_modules import install
from tests.fakes.irods_server import FakeCallback, FakeIrodsServer, FakeRei, RuleRun, irods_error

__all__ = ["FakeCallback", "FakeIrodsServer", "FakeRei", "RuleRun", "install", "irods_error"]
