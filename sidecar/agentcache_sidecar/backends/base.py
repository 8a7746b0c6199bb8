"""The one interface every storage backend implements.

Backends see *full* keys: the HTTP layer has already validated the agent's key
and prepended ``key_prefix``. Patterns passed to backends are Valkey-style globs
whose prefix part is already escaped (see ``keys.prefixed_pattern``), so a
backend never needs to know about tenants.

Time is wall-clock epoch seconds (``time.time()``) so that records written by
one process are understood by another (file directory, shared Valkey).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

from agentcache.protocol import BYTES_TYPE


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored value.

    ``fresh_until``: after it the value is stale (None: never). ``expires_at``:
    after it the value is gone, even for stale reads (None: never). Invariant:
    ``expires_at`` is None or ``fresh_until`` is not None and
    ``fresh_until <= expires_at``.
    """

    value: bytes
    content_type: str = BYTES_TYPE
    fresh_until: float | None = None
    expires_at: float | None = None

    @classmethod
    def create(
        cls, value: bytes, content_type: str, ttl: float, stale_ttl: float = 0, now: float | None = None
    ) -> Entry:
        """``ttl=0`` never expires; ``stale_ttl`` extends life for stale reads only. The content type is
        interned: the entries of one type share one string, not one per request (80 B an entry)."""
        content_type = sys.intern(content_type)
        if ttl <= 0:
            return cls(value, content_type, None, None)
        now = time.time() if now is None else now
        fresh_until = now + ttl
        return cls(value, content_type, fresh_until, fresh_until + max(stale_ttl, 0))

    def is_fresh(self, now: float | None = None) -> bool:
        return self.fresh_until is None or (time.time() if now is None else now) < self.fresh_until

    def is_expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at

    def remaining_ttl(self, now: float | None = None) -> float:
        """Seconds until the value turns stale; -1 when it never expires."""
        if self.fresh_until is None:
            return -1
        return max(0.0, self.fresh_until - (time.time() if now is None else now))

    def remaining_life(self, now: float | None = None) -> float | None:
        """Seconds until the value disappears entirely; None when never."""
        if self.expires_at is None:
            return None
        return max(0.0, self.expires_at - (time.time() if now is None else now))


class BackendError(Exception):
    """The backend could not serve an operation (connection lost, disk full, ...)."""


class BackendTimeout(BackendError):
    """The backend did not answer within its deadline (hung, overloaded): counts towards opening the circuit."""


class WriteRefused(BackendError):
    """This write was not stored (disk full, quota, read-only), but the backend still serves reads."""


class ValueTooLarge(Exception):
    """The backend refuses a value of this size (e.g. the file backend's max_file_size)."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"value of {size} bytes exceeds the backend limit of {limit} bytes")
        self.size = size
        self.limit = limit


Fresh = tuple[bytes, str]
"""A value still fresh and its Content-Type: what a batch read hands on (no ``Entry`` needed)."""

EvictionListener = Callable[[str, int], None]
"""Called as ``listener(reason, count)`` when entries are evicted (``lru``, ``expired``, ``size``, ``corrupt``)."""


class Backend(abc.ABC):
    """Async key/value storage with TTL, stale reads, globs and locks.

    Reads of expired entries return None. ``get`` returns stale (but not
    expired) entries too; callers decide with ``Entry.is_fresh``.
    """

    name: str = "abstract"
    bounds_itself: bool = False
    """The store adds no deadline timer around this backend's calls: they wait on no I/O (memory), or each
    already ends within the deadline the backend was given (valkey)."""

    def __init__(self) -> None:
        self._eviction_listeners: list[EvictionListener] = []
        self._sweeper: asyncio.Task | None = None

    def _start_sweeping(self, interval: float, sweep: Callable[[], Awaitable[object]]) -> None:
        """Run ``sweep`` every ``interval`` seconds until ``_stop_sweeping``; a failed sweep is logged, not fatal."""
        if self._sweeper is not None:
            return

        async def sweep_forever() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await sweep()
                except BackendError as exc:
                    logging.getLogger("agentcache.sidecar").warning("%s backend sweep failed: %s", self.name, exc)

        self._sweeper = asyncio.create_task(sweep_forever(), name=f"{self.name}-backend-sweep")

    async def _stop_sweeping(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def add_eviction_listener(self, listener: EvictionListener) -> None:
        self._eviction_listeners.append(listener)

    def _evicted(self, reason: str, count: int = 1) -> None:
        if count:
            for listener in self._eviction_listeners:
                listener(reason, count)

    async def start(self) -> None:
        """Open connections, start background sweeps. Must not raise when a remote is down."""

    async def close(self) -> None:
        """Stop background work and release resources."""

    def held(self, key: str) -> Entry | None:
        """The entry of ``key`` when this process holds it and can answer without I/O (the valkey
        backend's near cache), else None: then ``get`` asks the store."""
        return None

    @abc.abstractmethod
    async def get(self, key: str) -> Entry | None: ...

    async def get_many(self, keys: list[str]) -> list[Entry | None]:
        return [await self.get(key) for key in keys]

    async def get_many_fresh(self, keys: list[str]) -> list[Fresh | None]:
        """``get_many`` for batch reads: ``(value, content_type)`` of each entry still fresh, else None.

        Backends override it when they can skip building ``Entry`` objects; the result must be the same."""
        now = time.time()
        return [
            (entry.value, entry.content_type) if entry is not None and entry.is_fresh(now) else None
            for entry in await self.get_many(keys)
        ]

    @abc.abstractmethod
    async def set(self, key: str, entry: Entry) -> None: ...

    async def set_many(self, items: Iterable[tuple[str, Entry]]) -> None:
        for key, entry in items:
            await self.set(key, entry)

    @abc.abstractmethod
    async def delete(self, key: str) -> bool: ...

    async def delete_many(self, keys: list[str]) -> int:
        deleted = 0
        for key in keys:
            deleted += await self.delete(key)
        return deleted

    @abc.abstractmethod
    def scan(self, pattern: str, batch: int = 500) -> AsyncIterator[list[str]]:
        """Yield batches of live keys matching the glob ``pattern``."""

    async def delete_pattern(self, pattern: str) -> int:
        deleted = 0
        async for keys in self.scan(pattern):
            deleted += await self.delete_many(keys)
        return deleted

    async def key_count(self, pattern: str) -> int:
        count = 0
        async for keys in self.scan(pattern):
            count += len(keys)
        return count

    @abc.abstractmethod
    async def memory_usage(self) -> int:
        """Bytes the backend holds (approximate; for stats and metrics)."""

    @abc.abstractmethod
    async def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        """Take the lock ``key`` for ``ttl`` seconds unless someone holds it."""

    @abc.abstractmethod
    async def release_lock(self, key: str, token: str) -> bool:
        """Release ``key`` only if ``token`` holds it."""

    async def ping(self) -> bool:
        """True when the backend can serve requests."""
        return True

    def near_cache_stats(self) -> dict | None:
        """The near cache's figures (``near.py``) when this backend keeps one, else None."""
        return None
