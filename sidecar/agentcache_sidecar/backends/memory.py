"""In-process memory backend: an LRU dictionary with TTLs.

Invariants: get/set are O(1) (an ``OrderedDict`` in recency order);
``len(items) <= max_items`` and the accounted bytes stay ``<= max_bytes`` after
every set (least recently used entries are evicted first, reason ``lru``);
expired entries are never returned and are removed lazily on access and by a
sweep every ``cleanup_interval`` seconds (reason ``expired``). At most
``max_locks`` locks are held: when full, every expired lock is dropped, then
the oldest until a tenth of the room is free (amortised O(1) per lock).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator

from .base import Backend, Entry, Fresh
from .glob import compile_glob

ENTRY_OVERHEAD = 300
"""Bytes of bookkeeping per entry beyond its key, value and content type (the OrderedDict's slot and
node, the Entry, its floats, the key and value objects' headers): 1M entries of 100 B grew the RSS
by 433 B each against 130 B of key and value (``bench/backends.py``)."""


def entry_size(key: str, entry: Entry) -> int:
    """Bytes an entry holds in process memory, as counted against a byte bound (here and in the near cache)."""
    return len(key) + len(entry.value) + len(entry.content_type) + ENTRY_OVERHEAD


class MemoryBackend(Backend):
    name = "memory"
    bounds_itself = True  # no I/O to wait on

    def __init__(
        self,
        max_items: int = 10000,
        max_bytes: int = 256 * 1024 * 1024,
        cleanup_interval: float = 300,
        max_locks: int = 10000,
    ):
        super().__init__()
        self.max_items = max_items
        self.max_locks = max_locks
        self.max_bytes = max_bytes
        self.cleanup_interval = cleanup_interval
        self._items: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0
        self._locks: dict[str, tuple[str, float]] = {}

    async def start(self) -> None:
        self._start_sweeping(self.cleanup_interval, self._sweep_now)

    async def close(self) -> None:
        await self._stop_sweeping()

    async def _sweep_now(self) -> None:
        self.sweep()

    def sweep(self, now: float | None = None) -> int:
        """Remove every expired entry and lock; returns how many entries went."""
        now = time.time() if now is None else now
        expired = [key for key, entry in self._items.items() if entry.is_expired(now)]
        for key in expired:
            self._remove(key)
        self._evicted("expired", len(expired))
        for key in [k for k, (_, until) in self._locks.items() if until <= now]:
            del self._locks[key]
        return len(expired)

    def _remove(self, key: str) -> Entry | None:
        entry = self._items.pop(key, None)
        if entry is not None:
            self._bytes -= entry_size(key, entry)
        return entry

    def _live(self, key: str) -> Entry | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        if entry.is_expired():
            self._remove(key)
            self._evicted("expired")
            return None
        return entry

    async def get(self, key: str) -> Entry | None:
        entry = self._live(key)
        if entry is not None:
            self._items.move_to_end(key)
        return entry

    async def get_many(self, keys: list[str]) -> list[Entry | None]:
        return [await self.get(key) for key in keys]

    async def get_many_fresh(self, keys: list[str]) -> list[Fresh | None]:
        """As ``get`` for each key (expired entries removed, live ones made most recent), in one loop."""
        now = time.time()
        items = self._items
        found: list[Fresh | None] = []
        expired = 0
        for key in keys:
            entry = items.get(key)
            if entry is None:
                found.append(None)
            elif entry.expires_at is not None and now >= entry.expires_at:
                self._remove(key)
                expired += 1
                found.append(None)
            else:
                items.move_to_end(key)
                fresh = entry.fresh_until is None or now < entry.fresh_until
                found.append((entry.value, entry.content_type) if fresh else None)
        self._evicted("expired", expired)
        return found

    async def set(self, key: str, entry: Entry) -> None:
        self._remove(key)
        self._items[key] = entry
        self._bytes += entry_size(key, entry)
        evicted = 0
        while len(self._items) > self.max_items or (self._bytes > self.max_bytes and len(self._items) > 1):
            oldest = next(iter(self._items))
            self._remove(oldest)
            evicted += 1
        self._evicted("lru", evicted)

    async def delete(self, key: str) -> bool:
        return self._remove(key) is not None

    async def scan(self, pattern: str, batch: int = 500) -> AsyncIterator[list[str]]:
        matches = compile_glob(pattern)
        now = time.time()
        found = [key for key, entry in list(self._items.items()) if matches(key) and not entry.is_expired(now)]
        for start in range(0, len(found), batch):
            yield found[start : start + batch]

    async def memory_usage(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    async def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        now = time.time()
        held = self._locks.get(key)
        if held is not None and held[1] > now:
            return False
        if held is None and len(self._locks) >= self.max_locks:
            self._make_room_for_lock(now)
        self._locks[key] = (token, now + ttl)
        return True

    def _make_room_for_lock(self, now: float) -> None:
        for key in [k for k, (_, until) in self._locks.items() if until <= now]:
            del self._locks[key]
        target = self.max_locks - max(1, self.max_locks // 10)
        while len(self._locks) > target:
            del self._locks[next(iter(self._locks))]

    async def release_lock(self, key: str, token: str) -> bool:
        held = self._locks.get(key)
        if held is None or held[0] != token or held[1] <= time.time():
            return False
        del self._locks[key]
        return True
