"""The cache service behind the HTTP API: tenancy, enable switch, fallback and statistics.

Invariants:
- every key that reaches a backend is ``key_prefix + KEY_MARK + key`` and every
  lock ``key_prefix + LOCK_MARK + key``; neither mark can occur in a prefix or an
  agent's key (control characters), so a tenant's keys, patterns and locks never
  match another tenant's, even when one prefix nests the other (``a:`` and
  ``a:b:``); keys handed back are the agent's keys, without prefix and mark;
- every call of a backend that waits on I/O has a deadline (``sidecar.backend_timeout``, retries
  included): the store's timer, or the backend's own (``Backend.bounds_itself``); scans and batches
  are bounded per exchange by the backend instead;
- a backend failure on a read is a miss, on a write is a dropped write or a
  write to the memory fallback; nothing here raises ``BackendError`` upwards;
- the circuit opens (primary marked down) at once on a connection failure and
  after ``breaker_threshold`` consecutive timeouts; while open, requests go
  straight to the fallback (or miss) and a probe task pings the primary; when
  it answers again the fallback is emptied (its contents may contradict what
  other pods wrote meanwhile) and the circuit closes;
- a write the backend refused alone (``WriteRefused``: disk full) is dropped and
  counted; it does not open the circuit, reads go on being served;
- a lock TTL is at most ``max_lock_ttl``; a lock no backend could take is not granted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from agentcache.protocol import (
    DEGRADED_DISABLED,
    DEGRADED_DROPPED,
    DEGRADED_FALLBACK,
    KEY_MARK,
    LOCK_MARK,
    escape_glob,
)

from .backends.base import Backend, BackendError, BackendTimeout, Entry, Fresh, WriteRefused
from .backends.memory import MemoryBackend
from .metrics import SidecarMetrics

log = logging.getLogger("agentcache.sidecar")
T = TypeVar("T")
PROBE_INTERVAL = 0.5
GAUGE_SAMPLE_INTERVAL = 5.0
"""Scrapes refresh the key/memory gauges at most this often: counting keys is a full SCAN on Valkey."""


@dataclass
class WriteOutcome:
    stored: bool
    degraded: str | None = None  # a protocol.DEGRADED_* when the primary did not take the write


class CacheService:
    def __init__(
        self,
        backend: Backend,
        *,
        key_prefix: str,
        enabled: bool,
        fallback: str,
        metrics: SidecarMetrics,
        fallback_max_items: int = 10000,
        fallback_max_bytes: int = 64 << 20,
        deadline: float = 0.25,
        breaker_threshold: int = 3,
        max_lock_ttl: float = 600.0,
    ):
        if not key_prefix:
            raise ValueError("key_prefix must not be empty")
        self.backend = backend
        self.prefix = key_prefix
        self._key_base = key_prefix + KEY_MARK
        self._lock_base = key_prefix + LOCK_MARK
        self.deadline = deadline
        self.breaker_threshold = breaker_threshold
        self.max_lock_ttl = max_lock_ttl
        self._timeouts_in_row = 0
        self.timeouts = 0
        self.enabled = enabled
        self.metrics = metrics
        self.fallback: MemoryBackend | None = (
            MemoryBackend(max_items=fallback_max_items, max_bytes=fallback_max_bytes)
            if fallback == "memory" and backend.name == "valkey"
            else None
        )
        self.primary_up = True
        self.hits = 0
        self.misses = 0
        self.dropped_writes = 0
        self.write_errors = 0
        self.last_write_error: str | None = None
        self.errors = 0
        self.evictions = 0
        self._probe: asyncio.Task | None = None
        self._gauges_sampled_at = float("-inf")
        backend.add_eviction_listener(self._on_evicted)
        metrics.watch_near_cache(backend.near_cache_stats)
        metrics.watch_reads(lambda: (self.hits, self.misses))

    def _on_evicted(self, reason: str, count: int) -> None:
        self.evictions += count
        self.metrics.evictions.labels(reason).inc(count)

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.backend.start()
        if self.fallback is not None:
            await self.fallback.start()
        if not await self._ping_primary():
            self._mark_down("startup")
        self.metrics.backend_up.set(1 if self.primary_up else 0)

    async def close(self) -> None:
        if self._probe:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self.fallback is not None:
            await self.fallback.close()
        await self.backend.close()

    async def _ping_primary(self) -> bool:
        try:
            return await self.backend.ping()
        except BackendError:
            return False

    def _mark_down(self, op: str) -> None:
        if self.primary_up:
            log.warning(
                "backend %s is unreachable (during %s); %s",
                self.backend.name,
                op,
                "serving from the memory fallback" if self.fallback is not None else "reads miss, writes are dropped",
            )
        self.primary_up = False
        self.metrics.backend_up.set(0)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._probe_until_up(), name="backend-probe")

    async def _probe_until_up(self) -> None:
        while not await self._ping_primary():
            await asyncio.sleep(PROBE_INTERVAL)
        log.warning("backend %s is reachable again", self.backend.name)
        if self.fallback is not None:
            await self.fallback.delete_pattern("*")
        self.primary_up = True
        self.metrics.backend_up.set(1)

    @property
    def writes_failing(self) -> bool:
        """The last write the backend was given was refused (disk full): reads go on, writes are dropped."""
        return self.last_write_error is not None

    @property
    def ready(self) -> bool:
        return self.primary_up or self.fallback is not None

    def _failed(self, op: str, exc: BackendError) -> None:
        """Count a failure; open the circuit on an outage or on ``breaker_threshold`` timeouts in a row."""
        self.errors += 1
        self.metrics.backend_errors.labels(op).inc()
        log.debug("backend error during %s: %s", op, exc)
        if isinstance(exc, WriteRefused):
            self.write_errors += 1
            self.last_write_error = str(exc)
            return
        if isinstance(exc, BackendTimeout):
            self.timeouts += 1
            self._timeouts_in_row += 1
            if self._timeouts_in_row < self.breaker_threshold:
                return
        self._mark_down(op)

    async def _run(self, op: str, primary: Callable[[Backend], Awaitable[T]], degraded: T, bounded: bool = True) -> T:
        """Run ``primary`` on the backend within the deadline; on failure (or while down) on the fallback,
        else ``degraded``. ``bounded=False``: scans, whose backend bounds each exchange instead."""
        if self.primary_up:
            try:
                if not bounded or self.backend.bounds_itself:
                    result = await primary(self.backend)
                else:
                    try:
                        async with asyncio.timeout(self.deadline):
                            result = await primary(self.backend)
                    except TimeoutError:
                        raise BackendTimeout(f"{self.backend.name} {op} took longer than {self.deadline} s") from None
            except BackendError as exc:
                self._failed(op, exc)
                if isinstance(exc, WriteRefused):
                    return degraded
            else:
                self._timeouts_in_row = 0
                return result
        if self.fallback is not None:
            return await primary(self.fallback)
        return degraded

    # --- keys ------------------------------------------------------------------------------------

    def full_key(self, key: str) -> str:
        return self._key_base + key

    def lock_key(self, key: str) -> str:
        return self._lock_base + key

    def agent_key(self, full_key: str) -> str:
        return full_key[len(self._key_base) :]

    def full_pattern(self, pattern: str) -> str:
        return escape_glob(self._key_base) + pattern

    # --- operations ------------------------------------------------------------------------------

    def _count(self, found: bool) -> None:
        if found:
            self.hits += 1
        else:
            self.misses += 1

    async def get(self, key: str, allow_stale: bool = False, count: bool = True) -> Entry | None:
        """``count=False`` for metadata reads (exists, ttl) that must not move the hit rate."""
        entry = None
        if self.enabled:
            full = self.full_key(key)
            entry = self.backend.held(full) if self.primary_up else None
            if entry is None:
                entry = await self._run("get", lambda b: b.get(full), None)
            if entry is not None and not allow_stale and not entry.is_fresh():
                entry = None
        if count:
            self._count(entry is not None)
        return entry

    async def get_many(self, keys: list[str]) -> list[Fresh | None]:
        """``(value, content_type)`` of each key still fresh, None for a miss; counts hits and misses."""
        values: list[Fresh | None] = [None] * len(keys)
        if self.enabled:
            base = self._key_base
            full = [base + k for k in keys]
            values = await self._run("get_many", lambda b: b.get_many_fresh(full), values, bounded=False)
        misses = values.count(None)
        hits = len(values) - misses
        self.hits += hits
        self.misses += misses
        return values

    async def _write(self, op: str, action: Callable[[Backend], Awaitable[None]], bounded: bool = True) -> WriteOutcome:
        if not self.enabled:
            self.dropped_writes += 1
            return WriteOutcome(stored=False, degraded=DEGRADED_DISABLED)
        sentinel = object()

        async def attempt(backend: Backend):
            await action(backend)
            return backend

        used = await self._run(op, attempt, sentinel, bounded)
        if used is sentinel:
            self.dropped_writes += 1
            return WriteOutcome(stored=False, degraded=DEGRADED_DROPPED)
        if used is self.fallback:
            return WriteOutcome(stored=True, degraded=DEGRADED_FALLBACK)
        self.last_write_error = None
        return WriteOutcome(stored=True)

    async def set(self, key: str, entry: Entry) -> WriteOutcome:
        self.metrics.value_bytes.observe(len(entry.value))
        return await self._write("set", lambda b: b.set(self.full_key(key), entry))

    async def set_many(self, items: list[tuple[str, Entry]]) -> WriteOutcome:
        for _, entry in items:
            self.metrics.value_bytes.observe(len(entry.value))
        full = [(self.full_key(k), e) for k, e in items]
        return await self._write("set_many", lambda b: b.set_many(full), bounded=False)

    async def exists(self, key: str) -> bool:
        return await self.get(key, count=False) is not None

    async def delete(self, key: str) -> bool:
        return await self._run("delete", lambda b: b.delete(self.full_key(key)), False)

    async def delete_many(self, keys: list[str]) -> int:
        full = [self.full_key(k) for k in keys]
        return await self._run("delete_many", lambda b: b.delete_many(full), 0, bounded=False)

    async def delete_pattern(self, pattern: str) -> int:
        return await self._run(
            "delete_pattern", lambda b: b.delete_pattern(self.full_pattern(pattern)), 0, bounded=False
        )

    async def clear(self) -> int:
        return await self.delete_pattern("*")

    async def list_keys(self, pattern: str, limit: int) -> list[str]:
        async def collect(backend: Backend) -> list[str]:
            found: list[str] = []
            async for batch in backend.scan(self.full_pattern(pattern)):
                found.extend(self.agent_key(k) for k in batch)
                if len(found) >= limit:
                    break
            return sorted(found[:limit])

        return await self._run("list", collect, [], bounded=False)

    async def acquire_lock(self, key: str, token: str, ttl: float) -> bool | None:
        """True: taken; False: held by someone else; None: no backend could take it (not granted).

        ``ttl`` is capped at ``max_lock_ttl``."""
        ttl = min(ttl, self.max_lock_ttl)
        return await self._run("lock", lambda b: b.acquire_lock(self.lock_key(key), token, ttl), None)

    async def release_lock(self, key: str, token: str) -> bool:
        return await self._run("unlock", lambda b: b.release_lock(self.lock_key(key), token), False)

    async def sample_gauges(self) -> None:
        """Refresh the keys/memory gauges for a scrape, at most every ``GAUGE_SAMPLE_INTERVAL`` seconds."""
        if time.monotonic() - self._gauges_sampled_at >= GAUGE_SAMPLE_INTERVAL:
            await self.stats()

    async def stats(self) -> dict:
        key_count = await self._run("stats", lambda b: b.key_count(self.full_pattern("*")), 0, bounded=False)
        memory = await self._run("stats", lambda b: b.memory_usage(), 0)
        self.metrics.keys.set(key_count)
        self.metrics.memory.set(memory)
        self._gauges_sampled_at = time.monotonic()
        reads = self.hits + self.misses
        return {
            "backend": self.backend.name,
            "enabled": self.enabled,
            "backend_up": self.primary_up,
            "fallback_active": not self.primary_up and self.fallback is not None,
            "key_prefix": self.prefix,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / reads, 4) if reads else 0.0,
            "key_count": key_count,
            "memory_usage": memory,
            "evictions": self.evictions,
            "dropped_writes": self.dropped_writes,
            "write_errors": self.write_errors,
            "last_write_error": self.last_write_error,
            "circuit": "closed" if self.primary_up else "open",
            "backend_timeouts": self.timeouts,
            "near_cache": self.backend.near_cache_stats(),
            "errors": self.errors,
            "time": time.time(),
        }
