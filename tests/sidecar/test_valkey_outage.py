"""A real valkey-server killed under load: no 5xx for agents, fallback as configured, recovery after restart."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

import pytest

from agentcache_sidecar.store import KEY_MARK
from tests.support.sidecar import mixed_load


def valkey_config(url: str, fallback: str) -> dict:
    return {
        "cache": {"backend": "valkey", "key_prefix": "o:"},
        "services": {"valkey": {"config": {"url": url, "socket_timeout": 0.5, "socket_connect_timeout": 0.3}}},
        "sidecar": {"fallback": fallback},
    }


async def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


@pytest.mark.parametrize("fallback", ["memory", "miss"])
async def test_kill_valkey_under_load_no_5xx_and_recovery(sidecar_factory, valkey_server, fallback):
    sidecar = sidecar_factory(valkey_config(valkey_server.url, fallback))
    statuses: Counter = Counter()
    async with sidecar.session() as http:
        stop = asyncio.Event()
        workers = [asyncio.create_task(mixed_load(http, stop, statuses)) for _ in range(8)]
        await asyncio.sleep(0.5)
        valkey_server.stop()
        await asyncio.sleep(1.5)

        async with http.get("/readyz") as resp:
            ready = resp.status
        async with http.put("/v1/keys/during", data=b"x") as resp:
            degraded = resp.headers.get("X-Cache-Degraded")
        async with http.get("/v1/keys/during") as resp:
            during_status = resp.status

        valkey_server.start()

        async def backend_up():
            async with http.get("/v1/stats") as resp:
                return (await resp.json())["backend_up"]

        await wait_for(backend_up)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*workers)

        async with http.put("/v1/keys/after", data=b"back") as resp:
            assert resp.status == 204 and "X-Cache-Degraded" not in resp.headers
        async with http.get("/v1/keys/after") as resp:
            assert await resp.read() == b"back"
        async with http.get("/v1/stats") as resp:
            stats = await resp.json()

    assert sum(statuses.values()) > 100
    assert not [s for s in statuses if s >= 500], statuses
    assert stats["errors"] >= 1
    if fallback == "memory":
        assert ready == 200 and degraded == "fallback" and during_status == 200
    else:
        assert ready == 503 and degraded == "dropped" and during_status == 404
    import valkey

    assert valkey.Valkey.from_url(valkey_server.url).get("o:" + KEY_MARK + "after") is not None


async def test_sidecar_starts_while_valkey_is_down_then_connects(sidecar_factory, valkey_server):
    valkey_server.stop()
    sidecar = sidecar_factory(valkey_config(valkey_server.url, "miss"))
    async with sidecar.session() as http:
        async with http.get("/readyz") as resp:
            assert resp.status == 503
        async with http.get("/v1/keys/x") as resp:
            assert resp.status == 404
        valkey_server.start()

        async def ready():
            async with http.get("/readyz") as resp:
                return resp.status == 200

        await wait_for(ready)
        async with http.put("/v1/keys/x", data=b"1") as resp:
            assert resp.status == 204 and "X-Cache-Degraded" not in resp.headers


async def test_backend_metrics_during_outage(sidecar_factory, valkey_server):
    from aiohttp import ClientSession

    sidecar = sidecar_factory(valkey_config(valkey_server.url, "memory"))
    async with sidecar.session() as http:
        valkey_server.stop()
        async with http.get("/v1/keys/x") as resp:
            assert resp.status == 404
    async with ClientSession() as tcp:
        async with tcp.get(f"http://127.0.0.1:{sidecar.metrics_port}/metrics") as resp:
            text = await resp.text()
    assert "agentcache_backend_up 0.0" in text
    assert 'agentcache_backend_errors_total{op="get"} 1.0' in text


async def test_lock_is_exclusive_across_sidecars_sharing_valkey(sidecar_factory, valkey_server):
    one = sidecar_factory(valkey_config(valkey_server.url, "memory"), name="one")
    two = sidecar_factory(valkey_config(valkey_server.url, "memory"), name="two")
    async with one.session() as a, two.session() as b:
        async with a.post("/v1/keys/job/lock", params={"ttl": "10"}) as resp:
            assert resp.status == 200
            token = (await resp.json())["token"]
        async with b.post("/v1/keys/job/lock", params={"ttl": "10"}) as resp:
            assert resp.status == 409
        async with b.delete("/v1/keys/job/lock", params={"token": token}) as resp:
            assert resp.status == 204
        async with a.post("/v1/keys/job/lock", params={"ttl": "10"}) as resp:
            assert resp.status == 200
        async with a.put("/v1/keys/shared", data=b"from-one") as resp:
            assert resp.status == 204
        async with b.get("/v1/keys/shared") as resp:
            assert await resp.read() == b"from-one"


async def test_the_kubelet_probe_means_the_socket_serves_whatever_the_backend(sidecar_factory, valkey_server):
    """The injected probes hit TCP /healthz: an agent pod must stay in its Service while Valkey is down."""
    from aiohttp import ClientSession

    sidecar = sidecar_factory(valkey_config(valkey_server.url, "miss"))
    valkey_server.stop()
    async with sidecar.session() as http:
        async with http.get("/v1/keys/x") as resp:  # the sidecar notices the outage
            assert resp.status == 404
    probe = f"http://127.0.0.1:{sidecar.metrics_port}"
    async with ClientSession() as tcp:
        async with tcp.get(f"{probe}/readyz") as resp:
            assert resp.status == 503, "readyz still reports the backend"
        async with tcp.get(f"{probe}/healthz") as resp:
            assert resp.status == 200
        os.unlink(sidecar.socket_path)  # the socket no longer serves agents
        async with tcp.get(f"{probe}/healthz") as resp:
            assert resp.status == 503 and "socket" in (await resp.json())["status"]
