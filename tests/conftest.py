"""Suite-wide rules."""

from __future__ import annotations

import os

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI nothing may be skipped: a skipped suite would hide a missing service."""
    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        print(f"\nCI: {skipped} test(s) were skipped; every suite must run in CI.")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
