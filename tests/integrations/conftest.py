"""Fixtures of the integration tests: one real sidecar per module and backend (memory, valkey)."""

from __future__ import annotations

import pytest

from tests.support.sidecar import sidecar_on


@pytest.fixture(scope="module", params=["memory", "valkey"])
def sidecar(request, tmp_path_factory):
    """A real sidecar (key_prefix ``lc:``) on the backend named by the parameter."""
    with sidecar_on(request.param, tmp_path_factory.mktemp(f"integrations-{request.param}"), "lc:") as process:
        yield process
