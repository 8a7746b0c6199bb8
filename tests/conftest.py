"""Shared pytest setup.

Under ``CI=true`` a skipped test is a failure: CI must run everything. Tools the
tests need (valkey-server, helm, kubectl, prometheus) are found by
``tests.support.tools.require_tool``, which explains how to install a missing one.
Tests marked ``agentup_page`` read AgentUp's cache page, which is not part of
the repository: without it beside the repository they are deselected (not
skipped) and the collection report says why.
"""

from __future__ import annotations

import os

import pytest

from tests.support import agentup

pytest_plugins = ["tests.support.valkey", "tests.support.sidecar", "tests.support.k8s"]

IN_CI = os.environ.get("CI", "").lower() == "true"
_PAGE_ABSENT = pytest.StashKey[str]()


def pytest_collection_modifyitems(config, items):
    if agentup.page_path() is not None:
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("agentup_page") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
        config.stash[_PAGE_ABSENT] = (
            f"agentup_page: deselected {len(dropped)} test(s): {agentup.PAGE_NAME} is not in "
            f"{agentup.PAGE_RELATIVE.parent}/ beside the repository (the shapes in tests/fixtures/agentup/ run)"
        )


def pytest_report_collectionfinish(config):
    return config.stash.get(_PAGE_ABSENT, [])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (CI must run every test): {reason}"
