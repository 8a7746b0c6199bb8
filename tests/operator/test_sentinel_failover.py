"""Sentinel failover of a replicated cache: real valkey-servers and sentinels run the shipped scripts,
a real sidecar follows the primary through Sentinel, 8 clients load it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from agentcache.protocol import KEY_MARK
from tests.support.sidecar import mixed_load

from .replicated_nodes import NAME, Replicated, sidecar_config


@pytest.fixture
def replicated(tmp_path):
    group = Replicated(tmp_path)
    try:
        yield group.start()
    finally:
        group.stop()


@pytest.mark.e2e
@pytest.mark.timeout(180)
async def test_primary_killed_under_load_a_replica_is_promoted_and_no_client_sees_a_5xx(replicated, sidecar_factory):
    group = replicated
    before, after = (group.cache.key_prefix + KEY_MARK + key for key in ("before", "after"))  # as stored
    old_primary = group.client(group.ports[0])
    old_primary.set(before, "kept")
    assert old_primary.wait(2, 2000) == 2, "the marker reached both replicas"
    sidecar = sidecar_factory(sidecar_config(group))
    statuses: Counter = Counter()
    writes: list = []
    async with sidecar.session() as http:
        stop = asyncio.Event()
        workers = [asyncio.create_task(mixed_load(http, stop, statuses, writes, seed=n)) for n in range(8)]
        await asyncio.sleep(1)
        killed = time.monotonic()
        # The pod comes back at once and empty: the sentinels still name it primary.
        returned = await asyncio.to_thread(group.restart_empty, 0)
        deadline = killed + 60
        while group.primary_port() == group.ports[0] or not [at for at, d in writes[-100:] if at > killed and not d]:
            assert time.monotonic() < deadline, "writes never resumed on a promoted replica"
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        stop.set()
        await asyncio.gather(*workers)
        async with http.put("/v1/keys/after", data=b"on-the-new-primary") as resp:
            assert resp.status == 204 and "X-Cache-Degraded" not in resp.headers

    new_port = group.primary_port()
    assert new_port in group.ports[1:], "a replica was promoted"
    new_primary = group.client(new_port)
    assert b"on-the-new-primary" in new_primary.get(after), "the sidecar wrote to the promoted replica"
    assert new_primary.get(before) == b"kept", "the empty old primary wiped nothing"
    await asyncio.to_thread(
        returned.wait,
        lambda: "master_link_status:up" in returned.cli("info", "replication"),
        "the returned node to replicate the new primary",
        30,
    )
    assert returned.cli("get", before) == "kept"
    degraded = [at for at, d in writes if d]
    recovered = min(at for at, d in writes if at > degraded[-1] and not d) - killed
    print(
        f"writes resumed on the promoted replica {recovered:.1f}s after the kill; {len(degraded)} degraded writes; "
        f"statuses {dict(statuses)}"
    )
    assert sum(statuses.values()) > 200
    assert not [status for status in statuses if status >= 500], statuses


@pytest.mark.e2e
def test_an_empty_primary_with_no_replica_up_starts_at_once(replicated):
    """Nothing to protect: follow.sh waits for a promotion only while a replica is up to be promoted."""
    group = replicated
    for node in group.nodes[1:]:
        node.stop()
    sentinel = group.sentinels[0]
    sentinel.wait(
        lambda: sentinel.cli("sentinel", "replicas", NAME).count("s_down") == 2,
        "the sentinels to see both replicas down",
        timeout=30,
    )
    node = group.restart_empty(0)
    node.wait(lambda: node.cli("role").startswith("master"), "the empty primary to serve", timeout=10)
    assert group.primary_port() == group.ports[0]
