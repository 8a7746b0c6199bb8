"""Memory-backend specifics: LRU bounds by items and bytes, the periodic sweep, eviction reports."""

from __future__ import annotations

import asyncio

from agentcache_sidecar.backends.base import Entry
from agentcache_sidecar.backends.memory import MemoryBackend


def entry(value: bytes = b"v", ttl: float = 60) -> Entry:
    return Entry.create(value, "text/plain", ttl)


def recorder(backend: MemoryBackend) -> list[tuple[str, int]]:
    events: list[tuple[str, int]] = []
    backend.add_eviction_listener(lambda reason, count: events.append((reason, count)))
    return events


async def test_max_items_evicts_least_recently_used():
    backend = MemoryBackend(max_items=3)
    events = recorder(backend)
    for key in "abc":
        await backend.set(key, entry())
    await backend.get("a")  # a is now the most recently used
    await backend.set("d", entry())
    await backend.set("e", entry())
    assert [k for k in "abcde" if await backend.get(k)] == ["a", "d", "e"]
    assert events == [("lru", 1), ("lru", 1)]
    assert len(backend) == 3


async def test_max_bytes_bounds_memory_and_accounting_follows():
    backend = MemoryBackend(max_items=1000, max_bytes=10_000)
    for i in range(50):
        await backend.set(f"k{i}", entry(b"x" * 1000))
    assert await backend.memory_usage() <= 10_000
    assert await backend.get("k49") is not None and await backend.get("k0") is None
    for i in range(50):
        await backend.delete(f"k{i}")
    assert await backend.memory_usage() == 0


async def test_overwrite_and_delete_keep_accounting_exact():
    backend = MemoryBackend()
    await backend.set("k", entry(b"x" * 500))
    first = await backend.memory_usage()
    await backend.set("k", entry(b"x" * 100))
    assert await backend.memory_usage() == first - 400
    await backend.delete("k")
    assert await backend.memory_usage() == 0


async def test_periodic_sweep_removes_expired_entries_and_reports_them():
    backend = MemoryBackend(cleanup_interval=0.1)
    events = recorder(backend)
    await backend.start()
    try:
        await backend.set("short", entry(ttl=0.05))
        await backend.set("long", entry(ttl=60))
        await asyncio.sleep(0.35)
        assert len(backend) == 1, "swept without any read touching the expired key"
        assert ("expired", 1) in events
    finally:
        await backend.close()
