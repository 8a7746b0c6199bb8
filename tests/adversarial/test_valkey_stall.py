"""A real valkey-server SIGSTOPped (hung, not dead) under load: every backend call has a deadline and the
circuit opens, so no request waits for the hung server and none gets a 5xx; ``/readyz``, stats and metrics
say the circuit is open, and it closes by itself once Valkey answers again.

Valkey keeps its default client settings here (5 s socket timeout, retry on timeout): without the deadline
every request waited 5-10 s. The bound asserted (1 s) leaves room for a loaded machine; bench/adversarial.py
measures the real figure.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter

import aiohttp
import pytest

STALL = 3.0
BOUND = 1.0


async def timed_load(http, stop: asyncio.Event, statuses: Counter, worst: list[float], worker: int) -> None:
    i = 0
    while not stop.is_set():
        key = f"w{worker}-{i % 20}"
        started = time.monotonic()
        request = http.put(f"/v1/keys/{key}", data=b"v" * 100) if i % 3 == 0 else http.get(f"/v1/keys/{key}")
        async with request as resp:
            await resp.read()
        worst.append(time.monotonic() - started)
        statuses[resp.status] += 1
        i += 1


async def json_of(http, path: str) -> tuple[int, dict]:
    async with http.get(path) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize("fallback", ["memory", "miss"])
async def test_hung_valkey_costs_no_request_more_than_the_deadline(sidecar_factory, valkey_server, fallback):
    sidecar = sidecar_factory(
        {
            "cache": {"backend": "valkey", "key_prefix": "s:"},
            "services": {"valkey": {"config": {"url": valkey_server.url}}},
            "sidecar": {"fallback": fallback},
        }
    )
    statuses: Counter = Counter()
    latencies: list[float] = []
    async with sidecar.session() as http:
        stop = asyncio.Event()
        workers = [asyncio.create_task(timed_load(http, stop, statuses, latencies, n)) for n in range(8)]
        await asyncio.sleep(0.5)
        os.kill(valkey_server.proc.pid, signal.SIGSTOP)
        try:
            stalled_from = len(latencies)
            await asyncio.sleep(STALL)
            ready_status, ready = await json_of(http, "/readyz")
            _, stats = await json_of(http, "/v1/stats")
            async with aiohttp.ClientSession() as tcp:
                async with tcp.get(f"http://127.0.0.1:{sidecar.metrics_port}/metrics") as resp:
                    metrics = await resp.text()
            during = latencies[stalled_from:]
        finally:
            os.kill(valkey_server.proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 10
        while (await json_of(http, "/v1/stats"))[1]["circuit"] != "closed":
            assert time.monotonic() < deadline, "the probe never closed the circuit"
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*workers)
        async with http.put("/v1/keys/after", data=b"back") as resp:
            assert resp.status == 204 and "X-Cache-Degraded" not in resp.headers

    assert len(during) > 50, "the load went on while Valkey was hung"
    assert max(latencies) < BOUND, f"a request waited {max(latencies):.2f} s"
    assert not [s for s in statuses if s >= 500], statuses
    assert ready["circuit"] == "open" and ready["backend_up"] is False
    assert ready_status == (200 if fallback == "memory" else 503)
    assert stats["circuit"] == "open" and stats["backend_timeouts"] >= 1
    assert "agentcache_backend_up 0.0" in metrics
