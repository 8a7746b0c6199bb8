"""AsyncCache and Cache against real sidecars: every method, errors, scopes, keep-alive."""

from __future__ import annotations

import asyncio
import os

import pytest

from agentcache import AsyncCache, Cache, CacheUnavailable, InvalidKey, InvalidRequest, ValueTooLarge
from agentcache.errors import SerializationError


async def test_get_set_exists_delete(cache):
    assert await cache.get("missing") is None
    assert await cache.get("missing", default="not found") == "not found"
    assert await cache.set("key1", "value1") is True
    assert await cache.set("key2", {"data": "complex", "n": [1, 2.5, None]}, ttl=1800)
    assert await cache.get("key1") == "value1"
    assert await cache.get("key2") == {"data": "complex", "n": [1, 2.5, None]}
    assert await cache.exists("key1") is True
    assert await cache.exists("missing") is False
    assert await cache.delete("key1") is True
    assert await cache.delete("key1") is False
    assert await cache.get("key1") is None


async def test_stored_falsy_values_are_not_misses(cache):
    for key, value in {"zero": 0, "empty": "", "list": [], "false": False, "none": None}.items():
        await cache.set(key, value)
        found = await cache.lookup(key)
        assert found.found and found.value == value and not found.stale
    assert (await cache.lookup("absent")).found is False


async def test_keys_are_percent_encoded(cache):
    odd = ["a/b", "sp ace", "q?x=1&y", "%41", "unicodé:ключ", "#frag", "x/../y"]
    for key in odd:
        await cache.set(key, key)
    assert [await cache.get(key) for key in odd] == odd
    assert sorted(await cache.keys()) == sorted(odd)


async def test_ttl(cache):
    await cache.set("short", 1, ttl=60)
    await cache.set("forever", 1, ttl=0)
    assert 59 < await cache.ttl("short") <= 60
    assert await cache.ttl("forever") == -1
    assert await cache.ttl("missing") is None


async def test_expiry_and_stale_reads(cache):
    await cache.set("fleeting", "v", ttl=0.2, stale_ttl=30)
    await asyncio.sleep(0.35)
    assert await cache.get("fleeting") is None
    stale = await cache.lookup("fleeting", allow_stale=True)
    assert stale.found and stale.stale and stale.value == "v"
    await cache.set("gone", "v", ttl=0.2)
    await asyncio.sleep(0.35)
    assert (await cache.lookup("gone", allow_stale=True)).found is False


async def test_batch_operations(cache):
    data = {
        "user:123": {"name": "Alice", "role": "admin"},
        "user:456": {"name": "Bob", "role": "user"},
        "config:theme": {"mode": "dark", "color": "blue"},
        "blob": b"\x00\xffraw",
    }
    assert await cache.set_many(data, ttl=3600) is True
    values = await cache.get_many(["user:123", "user:456", "user:789", "blob"])
    assert values == {
        "user:123": data["user:123"],
        "user:456": data["user:456"],
        "user:789": None,
        "blob": b"\x00\xffraw",
    }
    assert 3590 < await cache.ttl("user:456") <= 3600
    assert await cache.delete_many(["user:123", "config:theme", "nope"]) == 2
    assert sorted(await cache.keys()) == ["blob", "user:456"]
    assert await cache.get_many([]) == {}
    assert await cache.delete_many([]) == 0


async def test_batches_larger_than_one_request(cache):
    data = {f"bulk:{i}": i for i in range(2500)}
    await cache.set_many(data)
    values = await cache.get_many(list(data))
    assert values == data
    assert await cache.delete_many(list(data)) == 2500


async def test_set_many_keeps_a_json_object_that_looks_like_base64(cache):
    tricky = {"$base64": "aGVsbG8="}
    await cache.set_many({"tricky": tricky, "plain": 1})
    assert await cache.get("tricky") == tricky
    assert await cache.get_many(["tricky", "plain"]) == {"tricky": tricky, "plain": 1}


async def test_delete_pattern_keys_and_clear(cache):
    await cache.set_many({"user:1:prefs": 1, "user:1:history": 2, "user:2:prefs": 3, "other": 4})
    assert sorted(await cache.keys("user:1:*")) == ["user:1:history", "user:1:prefs"]
    assert len(await cache.keys(limit=2)) == 2
    assert await cache.delete_pattern("user:1:*") == 2
    assert sorted(await cache.keys()) == ["other", "user:2:prefs"]
    assert await cache.clear() == 2
    assert await cache.keys() == []


async def test_stats(cache):
    await cache.set("s", 1)
    await cache.get("s")
    await cache.get("s-missing")
    stats = await cache.stats()
    assert stats["hits"] >= 1 and stats["misses"] >= 1
    assert 0 < stats["hit_rate"] < 1
    assert stats["key_count"] == 1
    assert stats["backend"] in ("memory", "valkey")


async def test_msgpack_values_keep_their_type_and_content_type(cache, sidecar):
    packed = AsyncCache(sidecar.socket_path, serializer="msgpack")
    try:
        await packed.set("mp", {"bytes": b"\x01\x02", 1: "int key"})
        await packed.set_many({"mp2": [1, b"x"], "mp3": "s"})
        assert await packed.get("mp") == {"bytes": b"\x01\x02", 1: "int key"}
        assert await cache.get("mp") == {"bytes": b"\x01\x02", 1: "int key"}, "readers follow the Content-Type"
        assert await cache.get_many(["mp2", "mp3", "none"]) == {"mp2": [1, b"x"], "mp3": "s", "none": None}
    finally:
        await packed.close()
    async with sidecar.session() as http:
        async with http.get("/v1/keys/mp2") as response:
            assert response.headers["Content-Type"] == "application/msgpack"


async def test_values_written_by_other_clients(cache, sidecar):
    async with sidecar.session() as http:
        await http.put("/v1/keys/plain", data=b"hello", headers={"Content-Type": "text/plain; charset=utf-8"})
        await http.put("/v1/keys/octets", data=b"\x00\x01")
        await http.put("/v1/keys/odd", data=b"<x/>", headers={"Content-Type": "application/xml"})
    assert await cache.get("plain") == "hello"
    assert await cache.get("octets") == b"\x00\x01"
    assert await cache.get("odd") == b"<x/>"


async def test_json_refuses_values_it_cannot_represent(cache):
    with pytest.raises(SerializationError, match="msgpack"):
        await cache.set("bad", {1, 2})
    with pytest.raises(SerializationError):
        await cache.set("nan", float("nan"))
    with pytest.raises(SerializationError):
        await cache.set_many({"ok": 1, "bad": object()})
    assert await cache.keys() == []


async def test_invalid_keys_and_ttls_raise_the_sidecars_error(cache):
    with pytest.raises(InvalidKey) as info:
        await cache.set("bad\nkey", 1)
    assert info.value.code == "bad_key" and info.value.status == 400 and "control character" in info.value.message
    with pytest.raises(InvalidKey):
        await cache.get("k" * 2000)
    with pytest.raises(InvalidKey):
        await cache.get("")
    with pytest.raises(InvalidKey):
        await cache.get(42)
    with pytest.raises(InvalidRequest) as info:
        await cache.set("k", 1, ttl=-5)
    assert info.value.code == "bad_ttl"
    with pytest.raises(InvalidRequest):
        await cache.set("k", 1, ttl="soon")


async def test_value_too_large(sidecar_factory):
    small = sidecar_factory({"cache": {"backend": "memory"}, "sidecar": {"max_value_bytes": 1024}})
    async with AsyncCache(small.socket_path) as cache:
        with pytest.raises(ValueTooLarge) as info:
            await cache.set("big", "x" * 5000)
        assert info.value.status == 413 and "1024" in info.value.message
        with pytest.raises(ValueTooLarge):
            await cache.set_many({"big": "x" * 5000})
    with Cache(small.socket_path) as sync:
        with pytest.raises(ValueTooLarge):
            sync.set("big", b"x" * 5000)


async def test_unreachable_sidecar_raises_cache_unavailable(tmp_path):
    async with AsyncCache(str(tmp_path / "nothing.sock"), timeout=1) as cache:
        with pytest.raises(CacheUnavailable, match="nothing.sock"):
            await cache.get("k")
        with pytest.raises(CacheUnavailable):
            await cache.set_many({"a": 1})
    with Cache(str(tmp_path / "nothing.sock"), timeout=1) as sync, pytest.raises(CacheUnavailable):
        sync.stats()


async def test_scopes_are_isolated(cache):
    await cache.set("secret", "parent")
    alice, bob = cache.scoped("user:1"), cache.scoped("user:12")
    await alice.set("prefs", {"theme": "dark"})
    await bob.set("prefs", {"theme": "light"})
    assert await alice.get("prefs") == {"theme": "dark"}
    assert await bob.get("prefs") == {"theme": "light"}
    assert await alice.get("secret") is None, "a scope cannot read its parent's keys"
    assert await alice.keys() == ["prefs"]
    assert await cache.get("user:1:prefs") == {"theme": "dark"}, "keys are scope + ':' + key"
    assert await alice.get_many(["prefs", "secret"]) == {"prefs": {"theme": "dark"}, "secret": None}
    assert await alice.delete_pattern("*") == 1
    assert await bob.get("prefs") == {"theme": "light"}, "user:1's pattern must not reach user:12"
    assert await cache.get("secret") == "parent"
    nested = bob.scoped("session:9")
    await nested.set("x", 1)
    assert await cache.get("user:12:session:9:x") == 1
    assert await nested.clear() == 1
    assert sorted(await cache.keys()) == ["secret", "user:12:prefs"]


async def test_scope_glob_characters_are_escaped(cache):
    star, plain = cache.scoped("team*"), cache.scoped("teamX")
    await star.set("k", 1)
    await plain.set("k", 2)
    assert await star.keys() == ["k"]
    assert await star.clear() == 1
    assert await plain.get("k") == 2
    bracket = cache.scoped("g[ab]")
    await cache.set("ga:k", "sibling")
    await bracket.set("k", 3)
    assert await bracket.delete_pattern("k") == 1
    assert await cache.get("ga:k") == "sibling"


@pytest.mark.parametrize("scope", ["", ":x", "x:", "a::b", "tab\there", None])
def test_bad_scope_names_are_refused(scope):
    with pytest.raises(InvalidKey):
        AsyncCache("/unused").scoped(scope)


def test_sync_cache_every_method(sync_cache):
    assert sync_cache.set("a", {"x": 1}, ttl=100)
    assert sync_cache.get("a") == {"x": 1}
    assert sync_cache.get("nope", default=7) == 7
    assert sync_cache.exists("a") and not sync_cache.exists("nope")
    assert 99 < sync_cache.ttl("a") <= 100
    sync_cache.set_many({"b": 2, "c": b"bytes"}, ttl=50)
    assert sync_cache.get_many(["a", "b", "c", "d"]) == {"a": {"x": 1}, "b": 2, "c": b"bytes", "d": None}
    assert sync_cache.keys() == ["a", "b", "c"]
    assert sync_cache.delete("a") and not sync_cache.delete("a")
    assert sync_cache.delete_many(["b"]) == 1
    assert sync_cache.delete_pattern("c*") == 1
    scope = sync_cache.scoped("tenant")
    scope.set("k", 1)
    assert sync_cache.keys() == ["tenant:k"] and scope.keys() == ["k"]
    assert sync_cache.stats()["key_count"] == 1
    token = sync_cache.lock("k", ttl=5)
    assert token and sync_cache.lock("k", ttl=5) is None
    assert sync_cache.unlock("k", token) and not sync_cache.unlock("k", token)
    assert sync_cache.clear() == 1


async def test_lock_and_unlock(cache):
    token = await cache.lock("job", ttl=5)
    assert token
    assert await cache.lock("job", ttl=5) is None
    assert await cache.unlock("job", "wrong-token") is False
    assert await cache.unlock("job", token) is True
    assert await cache.lock("job", ttl=5)


async def test_connections_are_kept_alive(sidecar_factory, monkeypatch):
    """Counts the connections opened (a spy around the real connect calls): one per client, reused."""
    from agentcache.wire import SyncConnection

    sidecar = sidecar_factory({"cache": {"backend": "memory"}})
    loop = asyncio.get_running_loop()
    opened = {"async": 0, "sync": 0}
    real_async_connect, real_sync_open = loop.create_unix_connection, SyncConnection._open

    async def counting_async_connect(*args, **kwargs):
        opened["async"] += 1
        return await real_async_connect(*args, **kwargs)

    def counting_sync_open(self):
        opened["sync"] += 1
        return real_sync_open(self)

    monkeypatch.setattr(loop, "create_unix_connection", counting_async_connect)
    monkeypatch.setattr(SyncConnection, "_open", counting_sync_open)
    async with AsyncCache(sidecar.socket_path) as cache:
        for i in range(30):
            await cache.set(f"k{i}", i)
            assert await cache.get(f"k{i}") == i
    with Cache(sidecar.socket_path) as sync:
        for i in range(30):
            assert sync.get(f"k{i}") == i
            assert sync.exists(f"k{i}")
    assert opened == {"async": 1, "sync": 1}


def test_sync_cache_reconnects_after_a_sidecar_restart(sidecar_factory):
    sidecar = sidecar_factory({"cache": {"backend": "memory"}})
    with Cache(sidecar.socket_path) as cache:
        cache.set("a", 1)
        sidecar.terminate()
        with pytest.raises(CacheUnavailable):
            cache.get("a")
        sidecar.start()
        assert cache.get("a") is None  # a memory backend starts empty
        cache.set("a", 2)
        assert cache.get("a") == 2


async def test_async_cache_reconnects_after_a_sidecar_restart(sidecar_factory):
    sidecar = sidecar_factory({"cache": {"backend": "memory"}})
    async with AsyncCache(sidecar.socket_path) as cache:
        await cache.set("a", 1)
        sidecar.terminate()
        sidecar.start()
        await cache.set("a", 2)
        assert await cache.get("a") == 2


def test_one_async_cache_across_event_loops(sidecar):
    cache = AsyncCache(sidecar.socket_path)

    async def roundtrip(value):
        await cache.set("loop", value)
        return await cache.get("loop")

    assert asyncio.run(roundtrip(1)) == 1
    assert asyncio.run(roundtrip(2)) == 2
    asyncio.run(cache.close())


def test_get_cache_uses_agentcache_socket(sidecar, monkeypatch):
    import agentcache.client as client

    monkeypatch.setattr(client, "_default_cache", None)
    monkeypatch.setenv("AGENTCACHE_SOCKET", sidecar.socket_path)
    from agentcache import get_cache

    cache = get_cache()
    assert cache is get_cache() and cache.socket_path == sidecar.socket_path
    assert cache.as_sync().set("default", "yes") and cache.as_sync().get("default") == "yes"
    asyncio.run(cache.close())


def test_default_socket_path(monkeypatch):
    from agentcache import default_socket_path

    monkeypatch.delenv("AGENTCACHE_SOCKET", raising=False)
    assert default_socket_path() == "/var/run/agentcache/cache.sock"
    monkeypatch.setenv("AGENTCACHE_SOCKET", "/tmp/x.sock")
    assert AsyncCache().socket_path == "/tmp/x.sock" and Cache().socket_path == "/tmp/x.sock"


def test_threads_share_a_sync_cache(sync_cache):
    from concurrent.futures import ThreadPoolExecutor

    def work(n):
        sync_cache.set(f"t{n}", n)
        return sync_cache.get(f"t{n}")

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(work, range(64))) == list(range(64))


def test_forked_child_uses_its_own_connection(sync_cache):
    sync_cache.set("fork", "parent")
    pid = os.fork()
    if pid == 0:
        code = 0 if sync_cache.get("fork") == "parent" and sync_cache.set("fork", "child") else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sync_cache.get("fork") == "child"


def test_sdk_input_mistakes_are_sdk_errors_not_tracebacks():
    from agentcache import InvalidKey, InvalidRequest, cached

    with pytest.raises(InvalidRequest, match="timeout"):
        Cache("/nonexistent.sock", timeout=0)
    with pytest.raises(InvalidKey, match="lone surrogate"):
        Cache("/nonexistent.sock").get("\udcff")
    with pytest.raises(InvalidRequest, match="ttl"):
        cached(ttl=-1)(lambda: 1)
