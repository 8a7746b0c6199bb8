"""Fixtures of the chart tests: the real helm binary with a private HELM_*_HOME, and the Kubernetes API."""

from __future__ import annotations

import pytest

from tests.support.tools import require_tool

from .helm import Helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> Helm:
    return Helm(require_tool("helm"), tmp_path_factory.mktemp("helm-home"))
