"""Fixtures of the SDK tests: real sidecars (memory and valkey backends) shared per module.

Each test gets a cache emptied at its start, so tests of one module can share
a sidecar without seeing each other's keys.
"""

from __future__ import annotations

import pytest

from agentcache import AsyncCache, Cache
from tests.support.sidecar import sidecar_on

BACKENDS = ["memory", "valkey"]


@pytest.fixture(scope="module", params=BACKENDS)
def sidecar(request, tmp_path_factory):
    """One real sidecar per module and backend (key_prefix ``sdk:``)."""
    with sidecar_on(request.param, tmp_path_factory.mktemp(f"sdk-{request.param}"), "sdk:") as process:
        yield process


@pytest.fixture
async def cache(sidecar):
    async with AsyncCache(sidecar.socket_path) as client:
        await client.clear()
        yield client


@pytest.fixture
def sync_cache(sidecar):
    with Cache(sidecar.socket_path) as client:
        client.clear()
        yield client
