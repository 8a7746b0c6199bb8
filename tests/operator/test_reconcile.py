"""Reconciler: what happens around one reconcile (retries), with a stand-in API client."""

from __future__ import annotations

import asyncio

from agentcache_operator import names, reconcile
from agentcache_operator.kube import ApiError
from agentcache_operator.reconcile import Reconciler


async def test_a_failed_event_driven_reconcile_is_retried(monkeypatch):
    """An API fault (a timeout, a 429 under load) must not leave a cache waiting for the next resync."""
    monkeypatch.setattr(reconcile, "RETRY_FIRST_SECONDS", 0.05)
    calls = []

    class Client:
        async def get(self, kind, namespace, name):
            calls.append(kind)
            if len(calls) == 1:
                raise ApiError(429, "too many requests")
            return None  # the cache is gone: nothing more to do

    reconciler = Reconciler(Client(), adopt=lambda children, owner: None)  # type: ignore[arg-type]
    reconciler.schedule("agents", "flaky")
    for _ in range(100):
        if len(calls) >= 2:
            break
        await asyncio.sleep(0.02)
    assert calls == [names.KIND, names.KIND]
