"""One conformance suite, run against every backend (memory, file, real valkey-server)."""

from __future__ import annotations

import asyncio
import time

import pytest

from agentcache.protocol import escape_glob
from agentcache_sidecar.backends.base import Entry
from agentcache_sidecar.config import parse_settings
from agentcache_sidecar.main import build_backend
from agentcache_sidecar.store import KEY_MARK, LOCK_MARK

BACKENDS = ["memory", "file", "valkey"]


def settings_for(kind: str, tmp_path, valkey_url: str | None):
    raw = {"cache": {"backend": kind, "storage_dir": str(tmp_path / "files"), "cleanup_interval": 3600}}
    if kind == "valkey":
        raw["services"] = {"valkey": {"config": {"url": valkey_url}}}
    return parse_settings(raw).settings


@pytest.fixture(params=BACKENDS)
async def backend(request, tmp_path):
    url = None
    if request.param == "valkey":
        url = request.getfixturevalue("valkey_server").url
    instance = build_backend(settings_for(request.param, tmp_path, url))
    await instance.start()
    yield instance
    await instance.close()


def entry(value: bytes, ttl: float = 60, stale_ttl: float = 0, content_type: str = "text/plain") -> Entry:
    return Entry.create(value, content_type, ttl, stale_ttl)


async def collect(backend, pattern: str) -> set[str]:
    found: set[str] = set()
    async for batch in backend.scan(pattern):
        found.update(batch)
    return found


async def test_round_trip_keeps_bytes_and_content_type(backend):
    value = bytes(range(256)) * 4
    await backend.set("p:bin", entry(value, content_type="application/x-test"))
    got = await backend.get("p:bin")
    assert got.value == value
    assert got.content_type == "application/x-test"
    assert got.is_fresh()


async def test_missing_key_is_none(backend):
    assert await backend.get("p:absent") is None


async def test_overwrite_replaces_value(backend):
    await backend.set("p:k", entry(b"one"))
    await backend.set("p:k", entry(b"two"))
    assert (await backend.get("p:k")).value == b"two"


async def test_delete_reports_whether_something_was_deleted(backend):
    await backend.set("p:k", entry(b"v"))
    assert await backend.delete("p:k") is True
    assert await backend.delete("p:k") is False
    assert await backend.get("p:k") is None


async def test_ttl_expires_value(backend):
    await backend.set("p:short", entry(b"v", ttl=0.2))
    assert (await backend.get("p:short")).value == b"v"
    await asyncio.sleep(0.35)
    assert await backend.get("p:short") is None


async def test_ttl_zero_never_expires(backend):
    await backend.set("p:forever", entry(b"v", ttl=0))
    got = await backend.get("p:forever")
    assert got.fresh_until is None and got.expires_at is None
    assert got.remaining_ttl() == -1


async def test_stale_value_survives_until_stale_ttl(backend):
    await backend.set("p:stale", entry(b"old", ttl=0.2, stale_ttl=30))
    await asyncio.sleep(0.3)
    got = await backend.get("p:stale")
    assert got is not None and got.value == b"old"
    assert not got.is_fresh()


async def test_remaining_ttl_counts_down(backend):
    await backend.set("p:t", entry(b"v", ttl=100))
    remaining = (await backend.get("p:t")).remaining_ttl()
    assert 98 < remaining <= 100


async def test_get_many_and_set_many(backend):
    await backend.set_many([("p:a", entry(b"1")), ("p:b", entry(b"2"))])
    got = await backend.get_many(["p:a", "p:missing", "p:b"])
    assert [g.value if g else None for g in got] == [b"1", None, b"2"]


async def test_delete_many_counts_deleted(backend):
    await backend.set_many([("p:a", entry(b"1")), ("p:b", entry(b"2"))])
    assert await backend.delete_many(["p:a", "p:b", "p:c"]) == 2


async def test_scan_matches_globs(backend):
    for key in ["p:a:1", "p:a:2", "p:b:1", "p:a:10", "q:a:1"]:
        await backend.set(key, entry(b"v"))
    assert await collect(backend, "p:a:*") == {"p:a:1", "p:a:2", "p:a:10"}
    assert await collect(backend, "p:a:?") == {"p:a:1", "p:a:2"}
    assert await collect(backend, "p:[ab]:1") == {"p:a:1", "p:b:1"}
    assert await collect(backend, "p:*") == {"p:a:1", "p:a:2", "p:b:1", "p:a:10"}


async def test_scan_skips_expired_entries(backend):
    await backend.set("p:gone", entry(b"v", ttl=0.1))
    await backend.set("p:here", entry(b"v"))
    await asyncio.sleep(0.25)
    assert await collect(backend, "p:*") == {"p:here"}


async def test_escaped_prefix_matches_literally(backend):
    prefix = "t[1]*?:"
    await backend.set(prefix + "x", entry(b"v"))
    await backend.set("t1:x", entry(b"v"))
    await backend.set("tZZ:x", entry(b"v"))
    assert await collect(backend, escape_glob(prefix) + "*") == {prefix + "x"}


async def test_delete_pattern_is_confined(backend):
    for i in range(30):
        await backend.set(f"p:user:{i}", entry(b"v"))
    await backend.set("p:other", entry(b"v"))
    await backend.set("pp:user:1", entry(b"v"))
    assert await backend.delete_pattern("p:user:*") == 30
    assert await collect(backend, "*") == {"p:other", "pp:user:1"}


async def test_key_count_and_memory_usage(backend):
    for i in range(5):
        await backend.set(f"p:{i}", entry(b"x" * 100))
    assert await backend.key_count("p:*") == 5
    assert await backend.memory_usage() > 0


async def test_unicode_keys(backend):
    await backend.set("p:ключ:🔑", entry(b"v"))
    assert (await backend.get("p:ключ:🔑")).value == b"v"
    assert await collect(backend, "p:ключ:*") == {"p:ключ:🔑"}


async def test_lock_is_exclusive_and_token_checked(backend):
    assert await backend.acquire_lock("p:job", "t1", 5) is True
    assert await backend.acquire_lock("p:job", "t2", 5) is False
    assert await backend.release_lock("p:job", "t2") is False
    assert await backend.release_lock("p:job", "t1") is True
    assert await backend.acquire_lock("p:job", "t2", 5) is True


async def test_lock_expires(backend):
    assert await backend.acquire_lock("p:job", "t1", 0.2) is True
    await asyncio.sleep(0.3)
    assert await backend.acquire_lock("p:job", "t2", 5) is True
    assert await backend.release_lock("p:job", "t1") is False


async def test_store_locks_are_invisible_to_its_scans(backend):
    """The store's lock keys (``prefix + LOCK_MARK + key``) never match its data patterns (``prefix + KEY_MARK``)."""
    await backend.acquire_lock("p:" + LOCK_MARK + "job", "t1", 5)
    await backend.set("p:" + KEY_MARK + "data", entry(b"v"))
    assert await collect(backend, "p:" + KEY_MARK + "*") == {"p:" + KEY_MARK + "data"}
    assert await backend.get("p:" + KEY_MARK + "job") is None


async def test_ping(backend):
    assert await backend.ping() is True


async def test_many_keys_scan_completely(backend):
    now = time.time()
    items = [(f"p:n:{i}", Entry(b"v", "text/plain", now + 60, now + 60)) for i in range(1200)]
    await backend.set_many(items)
    assert len(await collect(backend, "p:n:*")) == 1200


async def test_get_many_fresh_is_get_many_of_fresh_entries(backend):
    """The batch read path (no ``Entry`` objects) tells exactly what ``get_many`` and ``is_fresh`` tell."""
    now = time.time()
    await backend.set_many(
        [
            ("p:fresh", entry(b"1", content_type="application/json")),
            ("p:forever", Entry(b"2", "application/octet-stream")),
            ("p:stale", Entry(b"3", "text/plain", now - 1, now + 60)),
            ("p:expired", Entry(b"4", "text/plain", now - 2, now - 1)),
        ]
    )
    keys = ["p:fresh", "p:missing", "p:forever", "p:stale", "p:expired", "p:fresh"]
    assert await backend.get_many_fresh(keys) == [
        (b"1", "application/json"),
        None,
        (b"2", "application/octet-stream"),
        None,
        None,
        (b"1", "application/json"),
    ]
    assert await backend.get_many_fresh([]) == []
    assert (await backend.get("p:stale")).value == b"3", "a stale entry stays for stale reads"
