"""A sidecar that is stuck (SIGSTOPped: it accepts connections and never answers) costs an agent the SDK's
deadline once; after that the breaker is open, ``@cached`` functions just run at once, and when the sidecar
answers again the breaker closes by itself and caching resumes.

Without deadline and breaker every call waited the 5 s timeout again.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from agentcache import AsyncCache, Cache, CacheUnavailable, cached
from agentcache.breaker import PROBE_INTERVAL

DEADLINE = 0.3
FAST = 0.1
"""Bound on a call while the breaker is open: it never touches the socket (generous for a loaded machine)."""


def wait_until_cached(cache: Cache, timeout: float = 5 * PROBE_INTERVAL + 5) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cache.set("back", 1) and cache.get("back") == 1:
                return
        except CacheUnavailable:
            pass
        assert time.monotonic() < deadline, "the breaker never closed"
        time.sleep(0.1)


def test_sync_cached_function_pays_the_deadline_once(sidecar_factory):
    sidecar = sidecar_factory({"cache": {"backend": "memory", "key_prefix": "stuck:"}})
    cache = Cache(sidecar.socket_path, timeout=DEADLINE)
    runs = []

    @cached(ttl=60, cache=cache, key_template="f:{x}")
    def f(x):
        runs.append(x)
        return x * 2

    assert f(1) == 2 and f(1) == 2 and runs == [1]
    os.kill(sidecar.proc.pid, signal.SIGSTOP)
    try:
        durations = []
        for _ in range(6):
            started = time.monotonic()
            assert f(1) == 2
            durations.append(time.monotonic() - started)
        with pytest.raises(CacheUnavailable):
            cache.get("anything")
    finally:
        os.kill(sidecar.proc.pid, signal.SIGCONT)
    assert DEADLINE * 0.9 <= durations[0] < DEADLINE + 1.0, durations
    assert max(durations[1:]) < FAST, durations
    assert len(runs) == 7, "the function ran on every call while the sidecar was stuck"
    wait_until_cached(cache)


async def test_async_cached_function_pays_the_deadline_once(sidecar_factory):
    sidecar = sidecar_factory({"cache": {"backend": "memory", "key_prefix": "stuck:"}})
    cache = AsyncCache(sidecar.socket_path, timeout=DEADLINE)
    runs = []

    @cached(ttl=60, cache=cache, key_template="g:{x}")
    async def g(x):
        runs.append(x)
        return x + 1

    assert await g(1) == 2
    os.kill(sidecar.proc.pid, signal.SIGSTOP)
    try:
        durations = []
        for _ in range(6):
            started = time.monotonic()
            assert await g(1) == 2
            durations.append(time.monotonic() - started)
    finally:
        os.kill(sidecar.proc.pid, signal.SIGCONT)
    assert DEADLINE * 0.9 <= durations[0] < DEADLINE + 1.0, durations
    assert max(durations[1:]) < FAST, durations
    assert len(runs) == 7
    wait_until_cached(cache.as_sync())
    assert await cache.get("back") == 1
    await cache.close()
