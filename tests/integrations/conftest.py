"""Fixtures of the integration tests: one real sidecar per module and backend (memory, valkey)."""

from __future__ import annotations

import pytest

from tests.support.sidecar import SidecarProcess
from tests.support.valkey import ValkeyProcess


@pytest.fixture(scope="module", params=["memory", "valkey"])
def sidecar(request, tmp_path_factory):
    """A real sidecar (key_prefix ``lc:``) on the backend named by the parameter."""
    workdir = tmp_path_factory.mktemp(f"integrations-{request.param}")
    config = {"cache": {"backend": request.param, "key_prefix": "lc:"}}
    valkey = None
    if request.param == "valkey":
        valkey = ValkeyProcess(workdir / "valkey").start()
        config["services"] = {"valkey": {"config": {"url": valkey.url}}}
    process = SidecarProcess(workdir / "sidecar", config).start()
    yield process
    process.stop()
    if valkey:
        valkey.stop()
