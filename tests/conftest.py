"""Shared pytest setup.

Under ``CI=true`` a skipped test is a failure: CI must run everything. Tools the
tests need (valkey-server, helm, kubectl, prometheus) are found by
``tests.support.tools.require_tool``, which explains how to install a missing one.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.support.valkey", "tests.support.sidecar", "tests.support.k8s"]

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (CI must run every test): {reason}"
