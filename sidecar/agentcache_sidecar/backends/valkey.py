"""The ``valkey`` backend: entries as ``record`` envelopes in a (possibly shared) Valkey.

Invariants:

- Every value is one string key holding ``record.encode(entry)``, stored with
  ``PX`` = the entry's remaining life (no expiry when it has none); the record
  carries ``fresh_until`` so stale reads work. A blob that does not decode reads
  as a miss and is deleted.
- Concurrent ``get`` calls issued in the same event-loop tick are coalesced into
  one ``MGET`` and concurrent ``set`` calls into one pipeline (at most
  ``cache.pipeline_size`` per round trip). There are no timers in that path: a
  lone request is sent on the next loop iteration.
- Lock keys are given by the caller (``CacheService.lock_key``: inside the
  tenant's prefix, in a form no data pattern matches), stored as plain strings.
- Every exchange has a deadline (``deadline``, valkey-py's own retries
  included); missing it is a ``BackendTimeout``.
- ``delete_pattern`` and ``clear`` are a full ``SCAN`` cursor loop with ``UNLINK``
  on what the glob matched: never ``KEYS``, never ``FLUSHDB``.
- At most ``max_connections`` exchanges run at once (a semaphore in front of the
  pool): load beyond it queues instead of failing. (A semaphore rather than
  valkey-py's BlockingConnectionPool, whose per-checkout condition and timer
  cost more than a fast GET; the cluster client has no blocking pool at all.)
  ``ping`` uses a connection of its own, so it measures Valkey, not the queue.
- Every failure is a ``BackendError`` with a short reason, never a valkey-py
  exception; ``up`` is the last known reachability. The connection pool reconnects
  by itself when Valkey comes back.
- ``memory_usage`` is the server's ``INFO memory`` ``used_memory`` (summed over
  cluster primaries), cached for ``MEMORY_CACHE_SECONDS``. It is the whole
  server's figure, shared with every other tenant of that Valkey; a per-prefix
  figure would need ``MEMORY USAGE`` on every key, too costly for a metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import valkey.asyncio as valkey_asyncio
from valkey.asyncio.cluster import ValkeyCluster
from valkey.exceptions import ClusterError, NoScriptError, ValkeyClusterException, ValkeyError
from valkey.exceptions import ConnectionError as ValkeyConnectionError
from valkey.exceptions import TimeoutError as ValkeyTimeoutError

from ..config import CacheSettings, ConfigError, NearCacheSettings, ValkeySettings
from . import record
from .base import Backend, BackendError, BackendTimeout, Entry, Fresh
from .near import InvalidationListener, NearCache
from .sentinel import primary_clients

log = logging.getLogger("agentcache.sidecar")
MEMORY_CACHE_SECONDS = 2.0
CLIENT_NAME = "agentcache-sidecar"
_RELEASE_LOCK_LUA = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RELEASE_LOCK_SHA = hashlib.sha1(_RELEASE_LOCK_LUA.encode()).hexdigest()
_FAILURES = (ValkeyError, ValkeyClusterException, OSError, asyncio.TimeoutError)
_UNREACHABLE = (
    ValkeyConnectionError,
    ValkeyTimeoutError,
    ClusterError,
    ValkeyClusterException,
    OSError,
    asyncio.TimeoutError,
)
_REASON_LIMIT = 200

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Coalescer(Generic[Item, Result]):
    """Runs the items submitted during one event-loop tick as one batch.

    ``execute(items)`` returns one result per item, in order. Invariant: every
    submitted future is resolved exactly once, with its result or a
    ``BackendError``. While a batch is in flight, new submissions form the next
    batch, so batches overlap on different connections. When nothing is in
    flight, ``run`` executes its item at once: a lone request pays no batching
    hop, and batching starts as soon as requests overlap.
    """

    def __init__(self, execute: Callable[[list[Item]], Awaitable[list[Result]]], max_batch: int):
        self._execute = execute
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future]] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task] = set()
        self._direct = 0

    async def run(self, item: Item) -> Result:
        if self._direct or self._pending or self._tasks:
            return await self.submit(item)
        self._direct += 1
        try:
            return (await self._execute([item]))[0]
        except (BackendError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("valkey request failed unexpectedly")
            raise BackendError(f"valkey request failed: {type(exc).__name__}: {exc}"[:_REASON_LIMIT]) from None
        finally:
            self._direct -= 1

    def submit(self, item: Item) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((item, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._spawn(self._flush())
        return future

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        size = self._max_batch
        for start in range(size, len(pending), size):
            self._spawn(self._run(pending[start : start + size]))
        await self._run(pending[:size])

    async def _run(self, batch: list[tuple[Item, asyncio.Future]]) -> None:
        try:
            results = await self._execute([item for item, _ in batch])
        except BackendError as exc:
            _fail(batch, str(exc), type(exc))
        except asyncio.CancelledError:
            _fail(batch, "valkey backend closed")
            raise
        except Exception as exc:
            log.exception("valkey batch failed unexpectedly")
            _fail(batch, f"valkey batch failed: {type(exc).__name__}: {exc}"[:_REASON_LIMIT])
        else:
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        _fail(self._pending, "valkey backend closed")
        self._pending.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _fail(batch: Sequence[tuple[object, asyncio.Future]], reason: str, kind: type[BackendError] = BackendError) -> None:
    """Resolve every waiter still waiting with its own ``kind`` of error (a timeout stays a ``BackendTimeout``:
    the circuit breaker counts those)."""
    for _, future in batch:
        if not future.done():
            future.set_exception(kind(reason))


def pool_kwargs(settings: ValkeySettings) -> dict:
    """Connection options shared by the standalone pool and the cluster client."""
    kwargs = {
        "password": settings.effective_password(),
        **({"username": settings.username} if settings.username else {}),
        "retry_on_timeout": settings.retry_on_timeout,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_connect_timeout,
        "health_check_interval": settings.health_check_interval,
        "client_name": CLIENT_NAME,
    }
    if not settings.url.startswith("unix:"):
        kwargs["socket_keepalive"] = settings.socket_keepalive
    return kwargs


def _write_command(target, key: str, blob: bytes, px: int | None):
    """Issue (client) or queue (pipeline) the command that stores one record."""
    if px is None:
        return target.set(key, blob)
    if px <= 0:
        return target.unlink(key)
    return target.set(key, blob, px=px)


def _px(entry: Entry) -> int | None:
    """Milliseconds the record must live; None: forever; 0: already gone."""
    life = entry.remaining_life()
    return None if life is None else math.ceil(life * 1000)


class ValkeyBackend(Backend):
    """Cache entries in Valkey (standalone or cluster), shared by every sidecar that points at it."""

    name = "valkey"
    bounds_itself = True
    """Every exchange runs under ``_call``'s deadline, so neither the store nor the data connections add a
    timer of their own (valkey-py's socket timeout costs a task and two timers per command)."""

    def __init__(
        self,
        valkey: ValkeySettings,
        cache: CacheSettings,
        deadline: float = 0.25,
        near: NearCacheSettings | None = None,
        tracked_prefix: str = "",
        near_budget: int | None = None,
    ):
        """``near`` (enabled) keeps recently read entries in this process, at most ``near_budget`` bytes,
        invalidated by Valkey's tracking of the keys under ``tracked_prefix`` (``near.py``); a Valkey
        Cluster has none yet."""
        super().__init__()
        self._deadline = deadline
        self._settings = valkey
        self._batch = cache.pipeline_size
        self._compress_threshold = cache.compression_threshold if cache.compression else None
        self._ping_timeout = valkey.socket_connect_timeout
        self.up = False
        self._memory: tuple[float, int] | None = None
        self._slots = asyncio.Semaphore(valkey.max_connections)
        self._client: Any  # ValkeyCluster or Valkey: the calls below exist on both (or are guarded)
        self._probe: valkey_asyncio.Valkey | None
        if valkey.cluster:
            self._client, self._probe = self._cluster_client(valkey), None
        elif valkey.sentinel:
            self._client, self._probe = primary_clients(valkey.sentinel, valkey, pool_kwargs(valkey))
        else:
            self._client = valkey_asyncio.Valkey.from_pool(
                valkey_asyncio.ConnectionPool.from_url(
                    valkey.url,
                    db=valkey.db,
                    max_connections=valkey.max_connections,
                    **{**pool_kwargs(valkey), "socket_timeout": None},  # see bounds_itself
                )
            )
            self._probe = valkey_asyncio.Valkey.from_pool(
                valkey_asyncio.BlockingConnectionPool.from_url(
                    valkey.url, db=valkey.db, max_connections=1, **pool_kwargs(valkey)
                )
            )
        self.near: NearCache | None = None
        self._listener: InvalidationListener | None = None
        if near is not None and near.enabled and valkey.cluster:
            log.info("near cache off: not kept with a Valkey Cluster (every read goes to the cluster)")
        elif near is not None and near.enabled and tracked_prefix:
            max_bytes = min(near.max_bytes, near_budget or near.max_bytes)
            self.near = NearCache(near.max_items, max_bytes, near.max_value_bytes)
            self._listener = InvalidationListener(self._tracking_connection, tracked_prefix.encode(), self.near)
        self._gets: _Coalescer[str, bytes | None] = _Coalescer(self._fetch, self._batch)
        self._sets: _Coalescer[tuple[str, bytes, int | None], None] = _Coalescer(self._store, self._batch)

    @staticmethod
    def _cluster_client(settings: ValkeySettings) -> ValkeyCluster:
        """The cluster client retries connection errors (and timeouts when ``retry_on_timeout``) itself."""
        if settings.url.startswith("unix:"):
            raise ConfigError(
                "services.valkey.config.url: a Valkey Cluster cannot be reached over unix://; "
                "use valkey:// or valkeys:// with cluster: true"
            )
        if settings.db:
            raise ConfigError(
                f"services.valkey.config.db: {settings.db!r} is not valid with cluster: true; "
                "Valkey Cluster only has db 0"
            )
        kwargs = pool_kwargs(settings)
        if not kwargs.pop("retry_on_timeout"):
            kwargs["retry_on_error"] = [ValkeyConnectionError]
        return ValkeyCluster.from_url(settings.url, max_connections=settings.max_connections, **kwargs)

    # -- plumbing -----------------------------------------------------------

    def _failure(self, op: str, exc: BaseException) -> BackendError:
        if isinstance(exc, _UNREACHABLE):
            self.up = False
        reason = str(exc) or type(exc).__name__
        kind = BackendTimeout if isinstance(exc, (TimeoutError, ValkeyTimeoutError)) else BackendError
        return kind(f"valkey {op} failed: {reason[:_REASON_LIMIT]}")

    async def _call(self, op: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Valkey exchange, mapping every failure to ``BackendError``."""
        try:
            async with asyncio.timeout(self._deadline), self._slots:
                result = await call()
        except _FAILURES as exc:
            raise self._failure(op, exc) from None
        self.up = True
        return result

    async def _tracking_connection(self) -> Any:
        """A connection of its own (never a pool's) to the server the data goes to, for invalidations."""
        pool = (self._probe or self._client).connection_pool
        conn = pool.connection_class(**{**pool.connection_kwargs, "health_check_interval": 0})
        async with asyncio.timeout(self._ping_timeout):
            await conn.connect()
        return conn

    def near_cache_stats(self) -> dict | None:
        return None if self.near is None or self._listener is None or self._listener.refused else self.near.stats()

    async def start(self) -> None:
        await self.ping()
        if self._listener is not None:
            self._listener.start()

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        await self._gets.close()
        await self._sets.close()
        for client in (self._client, self._probe):
            if client is not None:
                with contextlib.suppress(*_FAILURES):
                    await client.aclose()

    async def ping(self) -> bool:
        """Reachability, answered within ``socket_connect_timeout`` on a connection of its own."""
        client = self._probe or self._client
        try:
            async with asyncio.timeout(self._ping_timeout):
                await client.ping()
        except _FAILURES:
            self.up = False
        else:
            self.up = True
        return self.up

    # -- reads ----------------------------------------------------------------

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        if self._settings.cluster:
            return await self._client.mget_nonatomic(keys)
        if len(keys) <= self._batch:
            return await self._client.execute_command("MGET", *keys)
        pipe = self._client.pipeline(transaction=False)
        for start in range(0, len(keys), self._batch):
            pipe.execute_command("MGET", *keys[start : start + self._batch])
        return [blob for chunk in await pipe.execute() for blob in chunk]

    async def _fetch(self, keys: list[str]) -> list[bytes | None]:
        return await self._call("get", lambda: self._mget(keys))

    async def _drop_corrupt(self, keys: list[str]) -> None:
        """Corrupt records read as misses and are deleted (best effort)."""
        self._evicted("corrupt", len(keys))
        with contextlib.suppress(BackendError):
            await self._unlink(keys)

    def held(self, key: str) -> Entry | None:
        return None if self.near is None else self.near.get(key)

    async def get(self, key: str) -> Entry | None:
        """From Valkey (``held`` is the near cache's answer); kept near when no invalidation intervened."""
        near = self.near
        if near is None:
            return await self._get(key)
        ticket = near.begin(key)
        try:
            entry = await self._get(key)
        except BaseException:
            near.abandon(key, ticket)
            raise
        near.fill(key, ticket, entry)
        return entry

    async def _get(self, key: str) -> Entry | None:
        blob = await self._gets.run(key)
        if blob is None:
            return None
        try:
            entry = record.decode(blob)
        except record.CorruptRecord:
            await self._drop_corrupt([key])
            return None
        return None if entry.is_expired() else entry

    async def get_many(self, keys: list[str]) -> list[Entry | None]:
        near = self.near
        if near is None or not keys:
            return await self._get_many(keys)
        found = [near.get(key) for key in keys]
        missing = [i for i, entry in enumerate(found) if entry is None]
        if not missing:
            return found
        wanted = [keys[i] for i in missing]
        tickets = [near.begin(key) for key in wanted]
        try:
            fetched = await self._get_many(wanted)
        except BaseException:
            for key, ticket in zip(wanted, tickets):
                near.abandon(key, ticket)
            raise
        for i, key, ticket, entry in zip(missing, wanted, tickets, fetched):
            near.fill(key, ticket, entry)
            found[i] = entry
        return found

    async def _get_many(self, keys: list[str]) -> list[Entry | None]:
        if not keys:
            return []
        entries: list[Entry | None] = []
        corrupt: list[str] = []
        now = time.time()
        for key, blob in zip(keys, await self._fetch(keys)):
            entry = None
            if blob is not None:
                try:
                    entry = record.decode(blob)
                except record.CorruptRecord:
                    corrupt.append(key)
            entries.append(None if entry is None or entry.is_expired(now) else entry)
        if corrupt:
            await self._drop_corrupt(corrupt)
        return entries

    async def get_many_fresh(self, keys: list[str]) -> list[Fresh | None]:
        """Straight from the records; with a near cache through ``get_many``, which serves and fills it."""
        if self.near is not None and self.near.live:
            return await super().get_many_fresh(keys)
        if not keys:
            return []
        values, corrupt = record.fresh_values(await self._fetch(keys), time.time())
        if corrupt:
            await self._drop_corrupt([keys[i] for i in corrupt])
        return values

    # -- writes ---------------------------------------------------------------

    async def _write(self, items: list[tuple[str, bytes, int | None]]) -> None:
        """SET each record with PX (UNLINK one whose life is already over); several in one pipeline."""
        if len(items) == 1:
            await _write_command(self._client, *items[0])
            return
        pipe = self._client.pipeline(transaction=False)
        for item in items:
            _write_command(pipe, *item)
        await pipe.execute()

    async def _store(self, items: list[tuple[str, bytes, int | None]]) -> list[None]:
        await self._call("set", lambda: self._write(items))
        return [None] * len(items)

    def _item(self, key: str, entry: Entry) -> tuple[str, bytes, int | None]:
        return key, record.encode(entry, self._compress_threshold), _px(entry)

    @contextlib.contextmanager
    def _changing(self, keys: Iterable[str] | None) -> Iterator[None]:
        """This sidecar changes ``keys`` (None: any key): not near before the change is sent, nor after
        it returned, so it reads its own writes without waiting for Valkey's invalidation."""
        near = self.near
        if near is None:
            yield
            return
        changed = None if keys is None else list(keys)

        def forget() -> None:
            if changed is None:
                near.invalidate_all()
            else:
                near.invalidate(changed)

        forget()
        try:
            yield
        finally:
            forget()

    async def set(self, key: str, entry: Entry) -> None:
        with self._changing((key,)):
            await self._sets.run(self._item(key, entry))

    async def set_many(self, items: Iterable[tuple[str, Entry]]) -> None:
        prepared = [self._item(key, entry) for key, entry in items]
        with self._changing(item[0] for item in prepared):
            for start in range(0, len(prepared), self._batch):
                await self._store(prepared[start : start + self._batch])

    async def delete(self, key: str) -> bool:
        with self._changing((key,)):
            return bool(await self._call("delete", lambda: self._client.unlink(key)))

    async def _unlink(self, keys: list) -> int:
        deleted = 0
        for start in range(0, len(keys), self._batch):
            chunk = keys[start : start + self._batch]
            deleted += await self._call("delete", lambda: self._client.unlink(*chunk))
        return deleted

    async def delete_many(self, keys: list[str]) -> int:
        with self._changing(keys):
            return await self._unlink(keys)

    # -- scans ----------------------------------------------------------------

    async def _scan_node(self, pattern: str, batch: int, node) -> AsyncIterator[list[bytes]]:
        cursor = 0
        while True:
            if node is None:
                cursor, keys = await self._call("scan", lambda: self._client.scan(cursor, match=pattern, count=batch))
            else:
                cursors, keys = await self._call(
                    "scan", lambda: self._client.scan(cursor, match=pattern, count=batch, target_nodes=node)
                )
                cursor = cursors[node.name]
            if keys:
                yield keys
            if cursor == 0:
                return

    async def _scan_raw(self, pattern: str, batch: int) -> AsyncIterator[list[bytes]]:
        """Full SCAN cursor loops (one per cluster primary); keys as stored."""
        nodes: list[Any]
        if not self._settings.cluster:
            nodes = [None]
        else:
            await self._call("scan", self._client.initialize)
            nodes = self._client.get_primaries()
        for node in nodes:
            async for keys in self._scan_node(pattern, batch, node):
                yield keys

    async def scan(self, pattern: str, batch: int = 500) -> AsyncIterator[list[str]]:
        async for keys in self._scan_raw(pattern, batch):
            yield [key.decode("utf-8", errors="replace") for key in keys]

    async def delete_pattern(self, pattern: str) -> int:
        deleted = 0
        with self._changing(None):
            async for keys in self._scan_raw(pattern, 500):
                deleted += await self._unlink(keys)
        return deleted

    async def key_count(self, pattern: str) -> int:
        count = 0
        async for keys in self._scan_raw(pattern, 1000):
            count += len(keys)
        return count

    # -- stats ----------------------------------------------------------------

    async def memory_usage(self) -> int:
        now = time.monotonic()
        if self._memory is not None and now - self._memory[0] < MEMORY_CACHE_SECONDS:
            return self._memory[1]
        if self._settings.cluster:
            info = await self._call(
                "memory_usage", lambda: self._client.info("memory", target_nodes=ValkeyCluster.PRIMARIES)
            )
            per_node = [info] if "used_memory" in info else list(info.values())
        else:
            per_node = [await self._call("memory_usage", lambda: self._client.info("memory"))]
        used = sum(int(node_info.get("used_memory", 0)) for node_info in per_node)
        self._memory = (now, used)
        return used

    # -- locks ----------------------------------------------------------------

    async def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        px = max(1, math.ceil(ttl * 1000))
        return bool(await self._call("lock", lambda: self._client.set(key, token, nx=True, px=px)))

    async def _release(self, lock_key: str, token: str) -> int:
        """EVALSHA of the compare-and-delete script; EVAL (which caches it) when the server lacks it."""
        try:
            return await self._client.evalsha(_RELEASE_LOCK_SHA, 1, lock_key, token)
        except NoScriptError:
            return await self._client.eval(_RELEASE_LOCK_LUA, 1, lock_key, token)

    async def release_lock(self, key: str, token: str) -> bool:
        return bool(await self._call("unlock", lambda: self._release(key, token)))
