"""The near cache (``backends/near.py``): Valkey entries kept in the sidecar, invalidated by Valkey's
client tracking. Real sidecars on one real valkey-server; the unit tests at the end drive ``NearCache``
alone."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest
import valkey

from agentcache import AsyncCache
from agentcache.protocol import KEY_MARK
from agentcache_operator.render.tenancy import acl_rule
from agentcache_sidecar.backends.base import Entry
from agentcache_sidecar.backends.near import NearCache
from tests.support.unix_proxy import UnixSocketProxy
from tests.support.valkey import ValkeyProcess

PREFIX = "near:"
INVALIDATION_BOUND = 1.0
"""Seconds within which a write through one sidecar reaches another's near cache in these tests
(measured: a median of about 0.3 ms, `bench/sidecar.py`); generous for a loaded 2-core machine."""


def config(url: str, **near) -> dict:
    return {
        "cache": {"backend": "valkey", "key_prefix": PREFIX},
        "services": {"valkey": {"config": {"url": url}}},
        "sidecar": {"near_cache": near} if near else {},
    }


def reads(server: ValkeyProcess) -> int:
    """GET and MGET commands the server has executed."""
    stats = valkey.Valkey(port=server.port).info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("get", "mget"))


async def near_stats(cache: AsyncCache) -> dict:
    return (await cache.stats())["near_cache"]


async def until(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (result := await predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)
    return result


async def live(cache: AsyncCache) -> bool:
    stats = await near_stats(cache)
    return bool(stats and stats["live"])


@pytest.fixture
def pair(sidecar_factory, valkey_server):
    """Two sidecars of one cache on one Valkey, each with its near cache live."""
    a = sidecar_factory(config(valkey_server.url), name="a")
    b = sidecar_factory(config(valkey_server.url), name="b")
    return a, b


async def test_a_write_through_one_sidecar_is_never_read_stale_through_the_other(pair, valkey_server):
    a, b = (AsyncCache(p.socket_path) for p in pair)
    await until(lambda: live(b), what="near cache live")
    await a.set("k", 0, ttl=0)
    assert await b.get("k") == 0
    before = reads(valkey_server)
    for _ in range(50):
        assert await b.get("k") == 0
    assert reads(valkey_server) == before, "near hits must not reach Valkey"

    for i in range(1, 101):
        assert await b.get("k") == i - 1  # held near
        await a.set("k", i, ttl=0)
        written = time.monotonic()
        while (seen := await b.get("k")) != i:
            assert seen == i - 1, f"read {seen!r} after writing {i}"
            assert time.monotonic() - written < INVALIDATION_BOUND, f"{seen!r} {INVALIDATION_BOUND} s after the write"
        assert await b.get("k") == i  # never back to an older value
    stats = await near_stats(b)
    assert stats["hits"] >= 150 and stats["invalidations"] >= 100 and stats["resets"] == 0
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{pair[1].metrics_port}/metrics", timeout=5).read().decode()
    values = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("agentcache_near_cache_"))
    assert float(values["agentcache_near_cache_hits_total"]) >= 150
    assert float(values["agentcache_near_cache_invalidations_total"]) >= 100
    assert values["agentcache_near_cache_live"] == "1.0"
    await a.close()
    await b.close()


async def test_under_concurrent_writers_and_readers_no_read_is_older_than_the_bound_allows(pair):
    """Writers through one sidecar, readers (single and batch) through the other, on few keys: a read sent
    more than ``INVALIDATION_BOUND`` after a write returned never sees an older version of that key."""
    a, b = (AsyncCache(p.socket_path) for p in pair)
    await until(lambda: live(b), what="near cache live")
    keys = [f"hot{i}" for i in range(4)]
    await a.set_many({key: 0 for key in keys}, ttl=0)
    writes: dict[str, list[tuple[float, int]]] = {key: [] for key in keys}  # (returned at, version)
    reads: list[tuple[str, float, int]] = []  # (key, sent at, version seen)
    stop = asyncio.Event()

    async def writer(key: str) -> None:
        for version in range(1, 400):
            await a.set(key, version, ttl=0)
            writes[key].append((time.monotonic(), version))
            await asyncio.sleep(0.005)

    async def reader(seed: int) -> None:
        n = seed
        while not stop.is_set():
            n += 1
            sent = time.monotonic()
            if n % 3:
                key = keys[n % len(keys)]
                reads.append((key, sent, await b.get(key)))
            else:
                for key, version in (await b.get_many(keys)).items():
                    reads.append((key, sent, version))

    readers = [asyncio.create_task(reader(seed)) for seed in range(4)]
    await asyncio.gather(*(writer(key) for key in keys))
    await asyncio.sleep(INVALIDATION_BOUND)
    stop.set()
    await asyncio.gather(*readers)
    assert await b.get_many(keys) == {key: 399 for key in keys}
    checked = 0
    for key, sent, seen in reads:
        settled = [version for returned, version in writes[key] if returned < sent - INVALIDATION_BOUND]
        if settled:
            checked += 1
            assert seen >= settled[-1], (
                f"{key}: read {seen} though {settled[-1]} was written {INVALIDATION_BOUND} s before"
            )
    assert checked > 100 and (await near_stats(b))["hits"] > 100
    await a.close()
    await b.close()


async def test_a_sidecar_reads_its_own_writes_at_once(pair):
    b = AsyncCache(pair[1].socket_path)
    await until(lambda: live(b), what="near cache live")
    for i in range(200):
        await b.set("mine", i, ttl=0)
        assert await b.get("mine") == i
        assert (await b.get_many(["mine", "other"]))["mine"] == i
    await b.close()


async def test_writes_deletes_expiries_and_flushes_by_any_client_invalidate(pair, valkey_server):
    b = AsyncCache(pair[1].socket_path)
    await until(lambda: live(b), what="near cache live")
    raw = valkey.Valkey(port=valkey_server.port)
    await b.set("gone", "v", ttl=0)
    await b.set("short", "v", ttl=0)
    await b.set("flushed", "v", ttl=0)
    assert await b.get_many(["gone", "short", "flushed"]) == {"gone": "v", "short": "v", "flushed": "v"}
    raw.delete(PREFIX + KEY_MARK + "gone")
    await until(lambda: _is(b, "gone", None), INVALIDATION_BOUND, "a DEL by another client seen")
    raw.pexpire(PREFIX + KEY_MARK + "short", 50)  # Valkey's own expiry
    await until(lambda: _is(b, "short", None), INVALIDATION_BOUND + 0.1, "an expiry seen")
    raw.flushdb()
    await until(lambda: _is(b, "flushed", None), INVALIDATION_BOUND, "a FLUSHDB seen")
    await b.close()


async def _is(cache: AsyncCache, key: str, expected) -> bool:
    return await cache.get(key) == expected


async def test_delete_pattern_and_clear_through_another_sidecar_invalidate(pair):
    a, b = (AsyncCache(p.socket_path) for p in pair)
    await until(lambda: live(b), what="near cache live")
    await a.set_many({"user:1:a": 1, "user:1:b": 2, "user:2:a": 3}, ttl=0)
    assert await b.get_many(["user:1:a", "user:1:b", "user:2:a"]) == {"user:1:a": 1, "user:1:b": 2, "user:2:a": 3}
    assert await a.delete_pattern("user:1:*") == 2
    await until(lambda: _is(b, "user:1:a", None), INVALIDATION_BOUND, "delete_pattern seen")
    assert await b.get("user:1:b") is None
    assert await b.get("user:2:a") == 3
    await a.clear()
    await until(lambda: _is(b, "user:2:a", None), INVALIDATION_BOUND, "clear seen")
    await a.close()
    await b.close()


def tracking_client_ids(server: ValkeyProcess) -> list[int]:
    """The subscribed (tracking) connections' client ids."""
    return [c["id"] for c in valkey.Valkey(port=server.port).client_list() if int(c.get("sub", 0)) > 0]


async def test_a_killed_tracking_connection_empties_the_near_cache_before_it_serves_again(
    sidecar_factory, valkey_server
):
    b = AsyncCache(sidecar_factory(config(valkey_server.url)).socket_path)
    await until(lambda: live(b), what="near cache live")
    raw = valkey.Valkey(port=valkey_server.port)
    await b.set("k", "old", ttl=0)
    assert await b.get("k") == "old" and await b.get("k") == "old"
    assert (await near_stats(b))["entries"] == 1
    (client_id,) = tracking_client_ids(valkey_server)
    raw.client_kill_filter(_id=client_id)
    stats = await until(lambda: _reset(b), what="the lost connection noticed")
    assert stats["entries"] == 0
    # written while nobody tracks for this sidecar: no invalidation will ever come for it
    raw.set(PREFIX + KEY_MARK + "k", _record(b"new"))
    assert await b.get("k") == "new"
    await until(lambda: live(b), what="tracking re-established")
    assert await b.get("k") == "new"
    hits = (await near_stats(b))["hits"]
    assert await b.get("k") == "new"
    assert (await near_stats(b))["hits"] == hits + 1, "serving from the near cache again"
    await b.close()


async def _reset(cache: AsyncCache) -> dict | None:
    stats = await near_stats(cache)
    return stats if stats["resets"] >= 1 else None


def _record(value: bytes) -> bytes:
    from agentcache_sidecar.backends import record

    return record.encode(Entry(b'"' + value + b'"', "application/json"))


async def test_a_silent_tracking_connection_stops_serving_within_its_staleness_bound(sidecar_factory, tmp_path):
    server = ValkeyProcess(tmp_path / "valkey").start()
    proxy = UnixSocketProxy(server.unix_socket)
    try:
        b = AsyncCache(sidecar_factory(config(f"valkey://127.0.0.1:{proxy.port}")).socket_path)
        await until(lambda: live(b), what="near cache live")
        await b.set("k", "old", ttl=0)
        assert await b.get("k") == "old" and await b.get("k") == "old"
        proxy.freeze()  # a partition: nothing reaches the sidecar, nothing is closed
        valkey.Valkey(port=server.port).set(PREFIX + KEY_MARK + "k", _record(b"new"))
        await asyncio.sleep(2.0)  # past STALE_AFTER (1.5 s)
        assert await b.get("k") != "old"
        proxy.thaw()
        await until(lambda: live(b), what="tracking re-established after the partition")
        assert await b.get("k") == "new"
        await b.close()
    finally:
        proxy.close()
        server.stop()


async def test_off_by_config_every_read_goes_to_valkey(sidecar_factory, valkey_server):
    b = AsyncCache(sidecar_factory(config(valkey_server.url, enabled=False)).socket_path)
    await b.set("k", 1, ttl=0)
    assert (await b.stats())["near_cache"] is None
    before = reads(valkey_server)
    for _ in range(10):
        assert await b.get("k") == 1
    assert reads(valkey_server) == before + 10
    assert tracking_client_ids(valkey_server) == []
    await b.close()


def _acl_server(tmp_path, rule: str) -> ValkeyProcess:
    acl = tmp_path / "users.acl"
    acl.write_text(f"user default on nopass ~* &* +@all\nuser sidecar {rule} >s3cret\n")
    return ValkeyProcess(tmp_path / "valkey", extra_args=["--aclfile", str(acl)]).start()


async def test_the_operators_acl_user_may_track_its_prefix(sidecar_factory, tmp_path):
    """A managed Valkey's sidecar user (``acl_rule``) is allowed everything the near cache sends."""
    server = _acl_server(tmp_path, acl_rule(PREFIX))
    try:
        url = f"valkey://sidecar:s3cret@127.0.0.1:{server.port}"
        b = AsyncCache(sidecar_factory(config(url)).socket_path)
        await until(lambda: live(b), what="near cache live as the ACL user")
        await b.set("k", 1, ttl=0)
        assert await b.get("k") == 1 and await b.get("k") == 1
        assert (await near_stats(b))["hits"] == 1
        await b.close()
    finally:
        server.stop()


@pytest.mark.parametrize("taken", [" +client|tracking", " +client|id", " &__redis__:invalidate"])
async def test_a_valkey_that_refuses_tracking_turns_the_near_cache_off_not_the_sidecar(
    sidecar_factory, tmp_path, taken
):
    rule = acl_rule(PREFIX).replace(taken, "")
    assert rule != acl_rule(PREFIX)
    server = _acl_server(tmp_path, rule)
    try:
        process = sidecar_factory(config(f"valkey://sidecar:s3cret@127.0.0.1:{server.port}"))
        b = AsyncCache(process.socket_path)
        await until(lambda: _near_off(b), what="near cache off")
        await b.set("k", 1, ttl=0)
        assert await b.get("k") == 1
        assert "near cache off: Valkey refused client tracking" in process.log_path.read_text()
        await b.close()
    finally:
        server.stop()


async def _near_off(cache: AsyncCache) -> bool:
    return (await cache.stats())["near_cache"] is None


async def test_a_value_replaced_while_its_read_travelled_back_is_not_kept(valkey_server):
    """The race the tickets close, made to happen: a read's answer (the old value) is held back until
    Valkey's invalidation of a newer write has been applied; that answer is served once, never kept."""
    from agentcache_sidecar.config import parse_settings
    from agentcache_sidecar.main import build_backend

    backend = build_backend(parse_settings(config(valkey_server.url)).settings)
    await backend.start()
    try:
        assert backend.near is not None
        await until(lambda: _true(backend.near.live), what="near cache live")
        key = PREFIX + KEY_MARK + "raced"
        raw = valkey.Valkey(port=valkey_server.port)
        raw.set(key, _record(b"old"))
        fetch = backend._gets._execute  # what a single get runs (the coalescer's one-key batch)

        async def old_answer_arriving_late(keys):
            blobs = await fetch(keys)  # Valkey answered "old" ...
            seen = backend.near.invalidations
            raw.set(key, _record(b"new"))  # ... then another client wrote "new"
            await until(lambda: _true(backend.near.invalidations > seen), what="the invalidation applied")
            return blobs

        backend._gets._execute = old_answer_arriving_late
        assert (await backend.get(key)).value == b'"old"'
        backend._gets._execute = fetch
        assert backend.held(key) is None
        assert (await backend.get(key)).value == b'"new"'
        assert backend.held(key).value == b'"new"'
    finally:
        await backend.close()


async def _true(value: bool) -> bool:
    return value


# --- NearCache alone -----------------------------------------------------------------------------


def live_near(**limits) -> NearCache:
    near = NearCache(**{"max_items": 100, "max_bytes": 1 << 20, "max_value_bytes": 1024, **limits})
    near.subscribed_now()
    return near


def test_a_fill_is_void_when_its_key_was_invalidated_while_the_read_travelled():
    near = live_near()
    ticket = near.begin("k")
    near.invalidate(["k"])
    near.fill("k", ticket, Entry(b"old"))
    assert near.get("k") is None
    ticket = near.begin("k")
    near.invalidate_all()
    near.fill("k", ticket, Entry(b"old"))
    assert near.get("k") is None
    first, second = near.begin("k"), near.begin("k")  # two reads in flight: only the later one is kept
    near.fill("k", first, Entry(b"1"))
    assert near.get("k") is None
    near.fill("k", second, Entry(b"2"))
    assert near.get("k") == Entry(b"2")


def test_nothing_is_kept_or_served_unless_live():
    near = NearCache(max_items=10, max_bytes=1 << 20, max_value_bytes=1024)
    assert near.begin("k") is None
    near.subscribed_now()
    near.fill("k", near.begin("k"), Entry(b"v"))
    assert near.get("k") == Entry(b"v")
    near.heard_at -= near.stale_after  # silent for too long
    assert near.get("k") is None
    near.heard()
    assert near.get("k") is None, "emptied, not merely hidden, while silent"
    assert not near.subscribed
    near.subscribed_now()
    near.fill("k", near.begin("k"), Entry(b"v"))
    near.reset()
    assert near.get("k") is None and len(near) == 0 and near.resets == 2


def test_bounded_by_items_bytes_and_value_size_least_recently_read_first():
    near = live_near(max_items=3, max_bytes=10_000, max_value_bytes=1000)
    for key in "abc":
        near.fill(key, near.begin(key), Entry(b"v"))
    assert near.get("a") is not None  # a is now the most recently read
    near.fill("d", near.begin("d"), Entry(b"v"))
    assert [k for k in "abcd" if near.get(k) is not None] == ["a", "c", "d"]
    near.fill("big", near.begin("big"), Entry(b"x" * 1001))
    assert near.get("big") is None
    bytes_bound = live_near(max_items=1000, max_bytes=2000, max_value_bytes=1000)
    for i in range(10):
        bytes_bound.fill(str(i), bytes_bound.begin(str(i)), Entry(b"x" * 500))
    assert bytes_bound.bytes <= 2000 and len(bytes_bound) == 2


def test_an_expired_entry_is_not_served():
    near = live_near()
    near.fill("k", near.begin("k"), Entry(b"v", fresh_until=time.time() - 2, expires_at=time.time() - 1))
    assert near.get("k") is None
