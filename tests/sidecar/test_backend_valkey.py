"""Valkey-specific behaviour of the ``valkey`` backend, against real valkey-server processes.

The behaviour every backend shares is in test_backend_conformance.py; here:
the stored representation (PX, compression), batching (MGET chunks, request
coalescing), SCAN-only bulk deletes confined to a prefix and a db, locks shared
by two backends, authentication, db and unix:// selection, outages with
reconnection, and a 3-master Valkey Cluster.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import pytest
import valkey.asyncio as valkey_asyncio

from agentcache_sidecar.backends import record
from agentcache_sidecar.backends.base import BackendError, Entry
from agentcache_sidecar.backends.valkey import CLIENT_NAME, ValkeyBackend
from agentcache_sidecar.config import CacheSettings, ConfigError, ValkeySettings
from agentcache_sidecar.store import KEY_MARK, LOCK_MARK
from tests.support.process import free_port
from tests.support.tools import require_tool
from tests.support.valkey import ValkeyProcess

pytestmark = pytest.mark.timeout(30)


def make_backend(url: str, **options) -> ValkeyBackend:
    cache_keys = {"compression", "compression_threshold", "pipeline_size"}
    cache = CacheSettings(**{k: v for k, v in options.items() if k in cache_keys})
    valkey = ValkeySettings(url=url, **{k: v for k, v in options.items() if k not in cache_keys})
    return ValkeyBackend(valkey, cache)


@pytest.fixture
async def backend(valkey_server):
    store = make_backend(valkey_server.url)
    await store.start()
    yield store
    await store.close()


@pytest.fixture
async def raw(valkey_server):
    """A plain valkey-py client on the same server, to look at what the backend stored."""
    client = valkey_asyncio.Valkey.from_url(valkey_server.url)
    yield client
    await client.aclose()


def entry(value: bytes = b"v", ttl: float = 0, stale_ttl: float = 0, content_type: str = "text/plain") -> Entry:
    return Entry.create(value, content_type, ttl, stale_ttl)


async def command_calls(raw, command: str) -> int:
    stats = await raw.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_round_trip_of_values_and_content_types(backend):
    await backend.set("p:a", entry(b"\x00\xffbinary", content_type="application/octet-stream"))
    await backend.set("p:b", entry(b'{"x": 1}', content_type="application/json"))

    a, b, missing = await backend.get_many(["p:a", "p:b", "p:none"])
    assert (a.value, a.content_type) == (b"\x00\xffbinary", "application/octet-stream")
    assert (b.value, b.content_type) == (b'{"x": 1}', "application/json")
    assert missing is None
    assert await backend.delete("p:a") is True
    assert await backend.delete("p:a") is False
    assert await backend.get("p:a") is None


async def test_batch_set_and_delete(backend):
    await backend.set_many([(f"p:{i}", entry(str(i).encode())) for i in range(250)])
    values = await backend.get_many([f"p:{i}" for i in range(250)])
    assert [v.value for v in values] == [str(i).encode() for i in range(250)]
    assert await backend.delete_many([f"p:{i}" for i in range(0, 250, 2)] + ["p:absent"]) == 125
    assert await backend.key_count("p:*") == 125


async def test_record_lives_for_ttl_plus_stale_ttl_and_reads_stale(backend, raw):
    await backend.set("p:k", entry(b"v", ttl=0.3, stale_ttl=0.4))
    pttl = await raw.pttl("p:k")
    assert 600 < pttl <= 700, "PX is the remaining life: ttl + stale_ttl"
    assert (await backend.get("p:k")).is_fresh()

    await asyncio.sleep(0.4)
    stale = await backend.get("p:k")
    assert stale is not None and not stale.is_fresh() and stale.value == b"v"

    await asyncio.sleep(0.35)
    assert await backend.get("p:k") is None
    assert await raw.exists("p:k") == 0, "Valkey expired the key itself"


async def test_value_without_ttl_has_no_expiry(backend, raw):
    await backend.set("p:forever", entry(b"v", ttl=0))
    assert await raw.pttl("p:forever") == -1
    assert (await backend.get("p:forever")).remaining_ttl() == -1


async def test_setting_an_already_expired_entry_removes_the_key(backend, raw):
    await backend.set("p:k", entry(b"old"))
    await backend.set("p:k", Entry(b"new", "text/plain", fresh_until=time.time() - 2, expires_at=time.time() - 1))
    assert await raw.exists("p:k") == 0


async def test_compression_shrinks_stored_bytes_above_the_threshold(valkey_server, raw):
    value = b"the same sentence again and again. " * 300
    plain = make_backend(valkey_server.url, compression=False)
    packed = make_backend(valkey_server.url, compression=True, compression_threshold=1024)
    try:
        await plain.set("plain:k", entry(value))
        await packed.set("packed:k", entry(value))
        await packed.set("packed:small", entry(b"tiny " * 10))

        assert await raw.strlen("packed:k") < await raw.strlen("plain:k") / 10
        assert await raw.strlen("plain:k") > len(value)
        assert (await raw.get("packed:k"))[3] & record.FLAG_ZSTD
        assert not (await raw.get("packed:small"))[3] & record.FLAG_ZSTD, "below the threshold: stored as is"
        assert (await packed.get("packed:k")).value == value
        assert (await plain.get("packed:k")).value == value, "any backend reads compressed records"
    finally:
        await plain.close()
        await packed.close()


async def test_corrupt_record_reads_as_miss_and_is_deleted(backend, raw):
    evictions = []
    backend.add_eviction_listener(lambda reason, count: evictions.append((reason, count)))
    await raw.set("p:bad", b"not a record")

    assert await backend.get("p:bad") is None
    assert await raw.exists("p:bad") == 0
    assert evictions == [("corrupt", 1)]

    await backend.set("p:good", entry(b"fine"))
    await raw.mset({"p:bad1": b"AC1", "p:bad2": b"garbage"})
    results = await backend.get_many(["p:bad1", "p:good", "p:bad2"])
    assert [r and r.value for r in results] == [None, b"fine", None]
    assert await raw.exists("p:bad1", "p:bad2") == 0
    assert evictions == [("corrupt", 1), ("corrupt", 2)]


async def test_get_many_is_chunked_into_mgets_of_pipeline_size(valkey_server, raw):
    store = make_backend(valkey_server.url, pipeline_size=7)
    try:
        await store.set_many([(f"p:{i}", entry(str(i).encode())) for i in range(0, 50, 2)])
        await raw.config_resetstat()
        values = await store.get_many([f"p:{i}" for i in range(50)])
        assert [v and v.value for v in values] == [str(i).encode() if i % 2 == 0 else None for i in range(50)]
        assert await command_calls(raw, "mget") == 8
        assert await command_calls(raw, "get") == 0
    finally:
        await store.close()


async def test_concurrent_gets_are_coalesced_into_few_mgets(valkey_server, raw):
    store = make_backend(valkey_server.url, pipeline_size=16)
    try:
        await asyncio.gather(*(store.set(f"p:{i}", entry(str(i).encode())) for i in range(64)))
        await raw.config_resetstat()
        values = await asyncio.gather(*(store.get(f"p:{i}") for i in range(64)))
        assert [v.value for v in values] == [str(i).encode() for i in range(64)]
        assert await command_calls(raw, "mget") == 5, "the first get runs at once; the other 63 are 4 MGETs of <= 16"
    finally:
        await store.close()


async def test_a_cancelled_caller_does_not_disturb_its_batch(backend):
    await backend.set_many([(f"p:{i}", entry(str(i).encode())) for i in range(10)])
    calls = [asyncio.ensure_future(backend.get(f"p:{i}")) for i in range(10)]
    await asyncio.sleep(0)
    calls[3].cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert [r.value for i, r in enumerate(results) if i != 3] == [str(i).encode() for i in range(10) if i != 3]


async def test_scan_deletes_only_its_prefix_and_db(valkey_server, raw):
    store = make_backend(valkey_server.url)
    other_db = make_backend(valkey_server.url, db=1)
    try:
        await store.set_many([(f"a:{i}", entry()) for i in range(5000)])
        await store.set_many([(f"b:{i}", entry()) for i in range(100)])
        await store.set_many([("a:exact*star", entry()), ("a:exact", entry())])
        await other_db.set_many([(f"a:{i}", entry()) for i in range(10)])
        await raw.config_resetstat()

        listed = [key async for batch in store.scan("a:*", batch=300) for key in batch]
        assert len(set(listed)) == 5002 and all(key.startswith("a:") for key in listed)
        assert await store.delete_pattern(r"a:exact\*star") == 1
        assert await store.delete_pattern("a:*") == 5001
        assert await store.key_count("a:*") == 0
        assert await store.key_count("b:*") == 100
        assert await other_db.key_count("a:*") == 10
        assert await command_calls(raw, "scan") > 10, "a full cursor loop, many SCAN calls"
        assert await command_calls(raw, "keys") == 0
        assert await command_calls(raw, "flushdb") == 0
    finally:
        await store.close()
        await other_db.close()


LOCK = "p:" + LOCK_MARK + "job"
DATA = "p:" + KEY_MARK + "*"


async def test_locks_are_shared_by_backends_and_outside_data_patterns(valkey_server, raw):
    """Lock keys are the store's (``prefix + LOCK_MARK + key``): no data pattern (``prefix + KEY_MARK + *``)
    matches them."""
    first = make_backend(valkey_server.url)
    second = make_backend(valkey_server.url)
    try:
        assert await first.acquire_lock(LOCK, "token-1", ttl=0.3)
        assert not await second.acquire_lock(LOCK, "token-2", ttl=5)
        assert await raw.get(LOCK) == b"token-1"

        assert await second.key_count(DATA) == 0
        assert [batch async for batch in second.scan(DATA)] == []
        assert await second.delete_pattern(DATA) == 0
        assert not await second.release_lock(LOCK, "token-2"), "only the holder releases"
        assert await raw.exists(LOCK) == 1

        await asyncio.sleep(0.35)
        assert await second.acquire_lock(LOCK, "token-2", ttl=5)
        assert not await first.release_lock(LOCK, "token-1"), "an expired holder cannot free the new lock"
        await raw.script_flush()
        assert await second.release_lock(LOCK, "token-2"), "EVALSHA falls back to EVAL after SCRIPT FLUSH"
        assert await first.acquire_lock("p:job", "token-3", ttl=5)
    finally:
        await first.close()
        await second.close()


async def test_memory_usage_is_the_servers_used_memory_cached(backend, raw):
    used = await backend.memory_usage()
    server_used = int((await raw.info("memory"))["used_memory"])
    assert 0 < used and abs(used - server_used) < server_used / 2
    await backend.set_many([(f"p:{i}", entry(b"x" * 10000)) for i in range(50)])
    assert await backend.memory_usage() == used, "cached for a second or two"


async def test_password_from_settings_url_or_environment(valkey_server, raw, monkeypatch):
    # Required after start: ValkeyProcess's readiness probe is an unauthenticated PING.
    await raw.config_set("requirepass", "s3cr:et")
    monkeypatch.setenv("AGENTCACHE_VALKEY_PASSWORD", "s3cr:et")
    good = [
        make_backend(valkey_server.url, password="s3cr:et"),
        make_backend(f"valkey://:s3cr%3Aet@127.0.0.1:{valkey_server.port}"),
        make_backend(valkey_server.url),
    ]
    for number, store in enumerate(good):
        await store.start()
        assert store.up
        await store.set(f"k{number}", entry(b"v"))
        assert (await store.get(f"k{number}")).value == b"v"
        await store.close()

    monkeypatch.delenv("AGENTCACHE_VALKEY_PASSWORD")
    for wrong in (make_backend(valkey_server.url), make_backend(valkey_server.url, password="wrong")):
        await wrong.start()
        assert not wrong.up and not await wrong.ping()
        with pytest.raises(BackendError, match="valkey get failed"):
            await wrong.get("k0")
        await wrong.close()


async def test_db_selection_from_settings_and_url(valkey_server):
    by_setting = make_backend(valkey_server.url, db=3)
    by_url = make_backend(valkey_server.url + "/4")
    inspect = {db: valkey_asyncio.Valkey.from_url(valkey_server.url, db=db) for db in (0, 3, 4)}
    try:
        await by_setting.set("k", entry(b"three"))
        await by_url.set("k", entry(b"four"))
        assert await inspect[0].exists("k") == 0
        assert record.decode(await inspect[3].get("k")).value == b"three"
        assert record.decode(await inspect[4].get("k")).value == b"four"
    finally:
        await by_setting.close()
        await by_url.close()
        for client in inspect.values():
            await client.aclose()


async def test_unix_socket_url(valkey_server, raw):
    store = make_backend(valkey_server.unix_url)
    try:
        await store.start()
        assert store.up
        await store.set("p:unix", entry(b"via socket"))
        assert record.decode(await raw.get("p:unix")).value == b"via socket"
        assert (await store.get("p:unix")).value == b"via socket"
    finally:
        await store.close()


async def test_load_beyond_the_pool_waits_instead_of_failing(valkey_server, raw):
    store = make_backend(valkey_server.url, max_connections=2)
    try:
        await store.set_many([(f"p:{i}", entry()) for i in range(200)])
        results = await asyncio.gather(*(store.delete(f"p:{i}") for i in range(200)))
        assert all(results)
        clients = await raw.client_list()
        assert sum(client["name"] == CLIENT_NAME for client in clients) <= 3, "2 pooled + 1 health probe"
    finally:
        await store.close()


async def test_outage_raises_backend_errors_then_recovers_without_a_new_backend(valkey_server):
    store = make_backend(valkey_server.url, socket_connect_timeout=0.5, socket_timeout=1)
    try:
        await store.start()
        await store.set("p:k", entry(b"v"))
        valkey_server.stop()

        started = time.monotonic()
        assert await store.ping() is False
        assert time.monotonic() - started < 1
        assert store.up is False
        operations = [
            store.get("p:k"),
            store.get_many(["p:k", "p:j"]),
            store.set("p:k", entry()),
            store.set_many([("p:k", entry())]),
            store.delete("p:k"),
            store.delete_many(["p:k"]),
            store.delete_pattern("p:*"),
            store.key_count("p:*"),
            store.memory_usage(),
            store.acquire_lock("p:k", "t", 1),
            store.release_lock("p:k", "t"),
            *(store.get(f"p:{i}") for i in range(20)),
            *(store.set(f"p:{i}", entry()) for i in range(20)),
        ]
        for outcome in await asyncio.gather(*operations, return_exceptions=True):
            assert isinstance(outcome, BackendError), outcome
        with pytest.raises(BackendError):
            async for _ in store.scan("p:*"):
                pass

        valkey_server.start()
        assert await store.get("p:k") is None, "the restarted server is empty; the pool reconnected"
        assert store.up is True
        await store.set("p:k", entry(b"again"))
        assert (await store.get("p:k")).value == b"again"
        assert await store.ping() is True
    finally:
        await store.close()


async def test_hung_server_answers_within_the_timeouts(valkey_server):
    store = make_backend(valkey_server.url, socket_connect_timeout=0.3, socket_timeout=0.3, retry_on_timeout=False)
    try:
        await store.start()
        await store.set("p:k", entry(b"v"))
        valkey_server.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert await store.ping() is False
            with pytest.raises(BackendError, match="valkey get failed"):
                await store.get("p:k")
            assert time.monotonic() - started < 1.5
        finally:
            valkey_server.proc.send_signal(signal.SIGCONT)
        assert (await store.get("p:k")).value == b"v"
        assert await store.ping() is True
    finally:
        await store.close()


async def test_start_does_not_raise_while_valkey_is_down(valkey_server):
    valkey_server.stop()
    store = make_backend(valkey_server.url, socket_connect_timeout=0.5)
    try:
        await store.start()
        assert store.up is False
        valkey_server.start()
        await store.set("p:k", entry(b"v"))
        assert (await store.get("p:k")).value == b"v"
        assert store.up is True
    finally:
        await store.close()


def test_cluster_settings_that_cannot_work_are_config_errors():
    with pytest.raises(ConfigError, match="db"):
        make_backend("valkey://127.0.0.1:7000", cluster=True, db=2)
    with pytest.raises(ConfigError, match="unix://"):
        make_backend("unix:///tmp/valkey.sock", cluster=True)


@pytest.fixture
def valkey_cluster(tmp_path):
    """Three masters, no replicas, all 16384 slots assigned."""
    cli = require_tool("valkey-cli")
    nodes = [
        ValkeyProcess(
            tmp_path / f"node{i}",
            extra_args=[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--cluster-port",
                str(free_port()),  # the default, port + 10000, may be taken or above 65535
            ],
        )
        for i in range(3)
    ]
    try:
        for node in nodes:
            node.start()
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=20,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [cli, "-p", str(node.port), "cluster", "info"], capture_output=True, text=True, timeout=5
                ).stdout
                for node in nodes
            ]
            if all("cluster_state:ok" in state for state in states):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the 3-node Valkey cluster did not reach cluster_state:ok")
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def test_cluster_client_spreads_keys_over_slots(valkey_cluster):
    store = make_backend(valkey_cluster[0].url, cluster=True, pipeline_size=50)
    try:
        await store.start()
        assert store.up
        keys = [f"tenant:{i}" for i in range(300)]
        await store.set_many([(key, entry(key.encode())) for key in keys])
        await asyncio.gather(*(store.set(f"other:{i}", entry()) for i in range(40)))

        assert [v.value for v in await store.get_many(keys)] == [key.encode() for key in keys]
        coalesced = await asyncio.gather(*(store.get(key) for key in keys[:120]))
        assert [v.value for v in coalesced] == [key.encode() for key in keys[:120]]

        per_node = []
        for node in valkey_cluster:
            client = valkey_asyncio.Valkey.from_url(node.url)
            per_node.append(await client.dbsize())
            await client.aclose()
        assert sum(per_node) == 340 and all(count > 0 for count in per_node), per_node

        assert await store.key_count("tenant:*") == 300
        assert await store.acquire_lock("lock:1", "t", 5)
        assert not await store.acquire_lock("lock:1", "u", 5)
        assert await store.release_lock("lock:1", "t")
        assert await store.memory_usage() > 0
        assert await store.delete_pattern("tenant:*") == 300
        assert await store.key_count("other:*") == 40
    finally:
        await store.close()


async def test_cluster_outage_raises_backend_errors_then_recovers(valkey_cluster):
    store = make_backend(valkey_cluster[0].url, cluster=True, socket_connect_timeout=0.5, socket_timeout=1)
    try:
        await store.start()
        await store.set_many([(f"k:{i}", entry()) for i in range(30)])
        for node in valkey_cluster:
            node.stop()
        started = time.monotonic()
        assert await store.ping() is False
        for outcome in await asyncio.gather(
            store.get("k:1"),
            store.set("k:1", entry()),
            store.key_count("*"),
            store.get_many(["k:1", "k:2"]),
            return_exceptions=True,
        ):
            assert isinstance(outcome, BackendError), outcome
        assert time.monotonic() - started < 10
        for node in valkey_cluster:
            node.start()
        deadline = time.monotonic() + 15
        while True:  # the restarted nodes need a moment to agree that the cluster is ok again
            try:
                await store.set("k:1", entry(b"back"))
                break
            except BackendError:
                assert time.monotonic() < deadline, "the cluster client did not recover"
                await asyncio.sleep(0.1)
        assert (await store.get("k:1")).value == b"back"
        assert await store.ping() is True
    finally:
        await store.close()


async def test_batch_read_drops_corrupt_records_and_reads_compressed_ones(valkey_server, raw):
    store = make_backend(valkey_server.url, compression=True, compression_threshold=64)
    evictions = []
    store.add_eviction_listener(lambda reason, count: evictions.append((reason, count)))
    try:
        await store.set("p:packed", entry(b"z" * 4096))
        await store.set("p:good", entry(b"fine"))
        good = await raw.get("p:good")
        await raw.mset({"p:bad1": b"AC1", "p:bad2": good[:25], "p:bad3": b"garbage" * 10})
        keys = ["p:bad1", "p:good", "p:packed", "p:bad2", "p:bad3", "p:none"]
        values = await store.get_many_fresh(keys)
        assert [v and v[0] for v in values] == [None, b"fine", b"z" * 4096, None, None, None]
        assert await raw.exists("p:bad1", "p:bad2", "p:bad3") == 0
        assert evictions == [("corrupt", 3)]
    finally:
        await store.close()
