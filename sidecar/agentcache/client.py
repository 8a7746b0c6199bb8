"""``AsyncCache`` and ``Cache``: the sidecar's HTTP API (docs/design.md §3) as Python methods.

Each operation is described once, as a ``Call`` (method, path, body, and how
to read the answer), and executed by a transport: a pool of asyncio
connections for ``AsyncCache``, one blocking connection per thread for
``Cache`` (both in ``wire``). Both keep their connections alive, so one
operation costs one round trip.

Invariants:
- a sidecar that cannot be reached, or does not answer within the call's
  deadline (``timeout``, default 1 s; ``SLOW_TIMEOUT`` for scans and batches),
  raises ``CacheUnavailable``; after a timeout the socket's breaker makes every
  call fail at once until the sidecar answers again (``breaker``); any other
  non-success answer raises the ``CacheError`` subclass for the sidecar's code;
- a scoped cache (``scoped("user:123")``) turns every key into
  ``"user:123:" + key``, confines patterns to that prefix (glob characters in
  the scope are escaped) and hands keys back without it, so it can never read,
  list or delete its parent's or a sibling's keys;
- scopes share their root's connections; only the root's ``close()`` closes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from . import protocol, wire
from .breaker import breaker_for
from .errors import CacheUnavailable, InvalidRequest, SerializationError, error_from_response
from .keys import check_key, check_scope, check_seconds
from .protocol import JSON_TYPE, escape_glob, is_envelope
from .serializers import MISS, Codec, Serializer

if TYPE_CHECKING:  # imported by AsyncCache's first call, which runs in an event loop: Cache never loads asyncio
    import asyncio

DEFAULT_TIMEOUT = 1.0
SLOW_TIMEOUT = 30.0
"""Deadline of calls whose work grows with the data: scans, clear, stats, batches."""
BATCH_CHUNK = 1000


def default_socket_path() -> str:
    """``$AGENTCACHE_SOCKET``, else the path the injector mounts (``/var/run/agentcache/cache.sock``)."""
    return os.environ.get(protocol.ENV_SOCKET) or protocol.SOCKET_PATH


@dataclass(slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(slots=True)
class Call:
    """One HTTP exchange and the function that turns its answer into the method's result."""

    method: str
    path: str
    parse: Callable[[Reply], Any]
    body: bytes | None = None
    content_type: str | None = None
    slow: bool = False
    accept: str | None = None


@dataclass(slots=True)
class Plan:
    """Several independent calls whose results ``combine`` merges (it may return a further ``Plan``)."""

    calls: list[Call]
    combine: Callable[[list[Any]], Any]


@dataclass(slots=True)
class Lookup:
    """What ``lookup`` found: ``found`` is False on a miss; ``stale`` when served past its freshness."""

    found: bool
    value: Any = None
    stale: bool = False


def _fail(reply: Reply) -> Any:
    raise error_from_response(reply.status, reply.body)


def _seconds(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"{name} must be a number of seconds, got {value!r}", protocol.ERR_BAD_TTL)
    return str(value)


def _json_body(payload: Any) -> bytes:
    try:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"cannot send the batch as JSON: {exc}") from None


class _Operations:
    """Builds the ``Call`` of every operation; shared by the async and the sync cache."""

    def __init__(
        self,
        socket_path: str | None,
        serializer: str | Serializer,
        signing_key: bytes | str | None,
        timeout: float,
        codec: Codec | None = None,
        scope: str = "",
    ):
        self.socket_path = socket_path or default_socket_path()
        self.timeout = check_seconds(timeout, "timeout", allow_none=False, positive=True)
        self.codec = codec or Codec(serializer, signing_key)
        self.scope = scope
        self._key_prefix = scope + protocol.SCOPE_SEPARATOR if scope else ""
        self._pattern_prefix = escape_glob(self._key_prefix)

    # --- keys ---------------------------------------------------------------------------------

    def _full(self, key: Any) -> str:
        return self._key_prefix + check_key(key)

    def _local(self, full_key: str) -> str:
        return full_key[len(self._key_prefix) :]

    @staticmethod
    def _key_path(full_key: str, suffix: str = "") -> str:
        return protocol.KEY_PATH_PREFIX + quote(full_key, safe="") + suffix

    def _decode(self, reply: Reply, full_key: str) -> Any:
        return self.codec.decode(reply.body, reply.headers.get("Content-Type"), full_key)

    # --- single keys --------------------------------------------------------------------------

    def get_call(self, key: str, default: Any) -> Call:
        full = self._full(key)

        def parse(reply: Reply) -> Any:
            if reply.status == 200:
                value = self._decode(reply, full)
                return default if value is MISS else value
            return default if reply.status == 404 else _fail(reply)

        return Call("GET", self._key_path(full), parse)

    def lookup_call(self, key: str, allow_stale: bool) -> Call:
        full = self._full(key)

        def parse(reply: Reply) -> Lookup:
            if reply.status == 200:
                value = self._decode(reply, full)
                if value is MISS:
                    return Lookup(False)
                return Lookup(True, value, reply.headers.get(protocol.HEADER_STALE) == "1")
            return Lookup(False) if reply.status == 404 else _fail(reply)

        return Call("GET", self._key_path(full, "?allow_stale=1" if allow_stale else ""), parse)

    def set_call(self, key: str, value: Any, ttl: float | None, stale_ttl: float | None) -> Call:
        full = self._full(key)
        body, content_type = self.codec.encode(value, full)
        query = {}
        if ttl is not None:
            query["ttl"] = _seconds(ttl, "ttl")
        if stale_ttl:
            query["stale_ttl"] = _seconds(stale_ttl, "stale_ttl")
        path = self._key_path(full, "?" + urlencode(query) if query else "")

        def parse(reply: Reply) -> bool:
            if reply.status == 204:
                return reply.headers.get(protocol.HEADER_DEGRADED) not in protocol.NOT_STORED
            return _fail(reply)

        return Call("PUT", path, parse, body, content_type)

    def exists_call(self, key: str) -> Call:
        return Call(
            "HEAD",
            self._key_path(self._full(key)),
            lambda r: True if r.status == 200 else False if r.status == 404 else _fail(r),
        )

    def delete_call(self, key: str) -> Call:
        return Call(
            "DELETE",
            self._key_path(self._full(key)),
            lambda r: True if r.status == 204 else False if r.status == 404 else _fail(r),
        )

    def ttl_call(self, key: str) -> Call:
        def parse(reply: Reply) -> float | None:
            if reply.status == 200:
                return json.loads(reply.body)["ttl"]
            return None if reply.status == 404 else _fail(reply)

        return Call("GET", self._key_path(self._full(key), "/" + protocol.TTL_RESOURCE), parse)

    def lock_call(self, key: str, ttl: float) -> Call:
        """Parse: the lock's token, or None while someone else holds it; ``LockUnavailable`` when the sidecar
        could take no lock at all."""

        def parse(reply: Reply) -> str | None:
            if reply.status == 200:
                return json.loads(reply.body)["token"]
            error = error_from_response(reply.status, reply.body)
            if reply.status == 409 and error.code == protocol.ERR_LOCKED:
                return None  # held by someone else; any other 409 (lock_unavailable) is raised
            raise error

        return Call(
            "POST",
            self._key_path(self._full(key), f"/{protocol.LOCK_RESOURCE}?" + urlencode({"ttl": _seconds(ttl, "ttl")})),
            parse,
        )

    def unlock_call(self, key: str, token: str) -> Call:
        return Call(
            "DELETE",
            self._key_path(self._full(key), f"/{protocol.LOCK_RESOURCE}?" + urlencode({"token": token})),
            lambda r: True if r.status == 204 else False if r.status == 409 else _fail(r),
        )

    # --- collections --------------------------------------------------------------------------

    def _deleted(self, reply: Reply) -> int:
        return json.loads(reply.body)["deleted"] if reply.status == 200 else _fail(reply)

    def delete_pattern_call(self, pattern: str) -> Call:
        if not isinstance(pattern, str) or not pattern:
            raise InvalidRequest("the pattern must be a non-empty glob string", protocol.ERR_BAD_PATTERN)
        query = urlencode({"pattern": self._pattern_prefix + pattern})
        return Call("DELETE", protocol.KEYS_PATH + "?" + query, self._deleted, slow=True)

    def clear_call(self) -> Call:
        if self.scope:
            return self.delete_pattern_call("*")
        return Call("DELETE", protocol.KEYS_PATH, self._deleted, slow=True)

    def keys_call(self, pattern: str, limit: int) -> Call:
        if not isinstance(pattern, str) or not pattern:
            raise InvalidRequest("the pattern must be a non-empty glob string", protocol.ERR_BAD_PATTERN)
        query = urlencode({"pattern": self._pattern_prefix + pattern, "limit": limit})

        def parse(reply: Reply) -> list[str]:
            if reply.status != 200:
                return _fail(reply)
            return [self._local(k) for k in json.loads(reply.body)["keys"]]

        return Call("GET", protocol.KEYS_PATH + "?" + query, parse, slow=True)

    def stats_call(self) -> Call:
        return Call(
            "GET", protocol.STATS_PATH, lambda r: json.loads(r.body) if r.status == 200 else _fail(r), slow=True
        )

    def _full_many(self, keys: list[Any]) -> list[str]:
        """``_full`` of each key; checked together in a few passes in C when all are valid (the usual case)."""
        if keys and set(map(type, keys)) == {str} and min(map(len, keys)) > 0:
            try:
                "".join(keys).encode("utf-8")
            except UnicodeEncodeError:
                pass
            else:
                prefix = self._key_prefix
                return [prefix + key for key in keys] if prefix else keys
        return [self._full(key) for key in keys]

    def get_many_plan(self, keys: Iterable[str], default: Any) -> Plan:
        """Batch gets, answered in ``BATCH_MSGPACK_TYPE`` (values as stored, with their Content-Type); a sidecar
        that answers JSON instead sends JSON values as themselves, others as ``{"$base64", "content_type"}``."""
        local = list(dict.fromkeys(keys))
        full = self._full_many(local)

        def call(chunk: list[str]) -> Call:
            def parse(reply: Reply) -> list[Any]:
                """The value of each key of ``chunk`` (``MISS`` for a miss)."""
                if reply.status != 200:
                    return _fail(reply)
                if reply.headers.get("Content-Type", "").startswith(protocol.BATCH_MSGPACK_TYPE):
                    return self._stored_values(reply.body, chunk)
                values = json.loads(reply.body)["values"]
                return [self._json_value(values.get(key), key) for key in chunk]

            body = _json_body({"keys": chunk})
            return Call("POST", protocol.BATCH_GET_PATH, parse, body, JSON_TYPE, True, protocol.BATCH_MSGPACK_TYPE)

        def combine(answers: list[list[Any]]) -> dict:
            found = answers[0] if len(answers) == 1 else [value for answer in answers for value in answer]
            return {local_key: default if value is MISS else value for local_key, value in zip(local, found)}

        return Plan([call(full[i : i + BATCH_CHUNK]) for i in range(0, len(full), BATCH_CHUNK)], combine)

    def _stored_values(self, body: bytes, keys: list[str]) -> list[Any]:
        """A ``BATCH_MSGPACK_TYPE`` answer to ``keys``: each value decoded by its Content-Type, ``MISS`` for a miss."""
        import msgpack  # with the first batch read: an agent that never reads one does not load it

        try:
            answer = msgpack.unpackb(body)
            values = answer[protocol.BATCH_VALUES_FIELD]
            types = answer[protocol.BATCH_TYPES_FIELD]
            names = answer[protocol.BATCH_CONTENT_TYPES_FIELD]
            if len(values) != len(keys) or len(types) != len(keys):
                raise ValueError(f"{len(values)} values for {len(keys)} keys")
            if names == [protocol.BYTES_TYPE]:  # raw bytes only: nothing to decode
                return [MISS if value is None else value for value in values]
            decode = self.codec.decode_fast
            return [
                MISS if value is None else decode(value, names[kind], key)
                for value, kind, key in zip(values, types, keys)
            ]
        except (ValueError, KeyError, TypeError, IndexError, msgpack.UnpackException) as exc:
            raise SerializationError(f"the sidecar sent an unreadable batch answer: {exc!r}") from None

    def _json_value(self, value: Any, full_key: str) -> Any:
        """A value of a JSON batch answer: itself, or the bytes of an envelope decoded by their Content-Type."""
        if value is None:
            return MISS
        if is_envelope(value):
            try:
                data, content_type = protocol.open_envelope(value)
            except ValueError:
                raise SerializationError(f"the sidecar sent an unreadable value for {full_key!r}") from None
            return self.codec.decode(data, content_type, full_key)
        return value

    def set_many_plan(self, mapping: Mapping[str, Any], ttl: float | None, stale_ttl: float | None) -> Plan:
        """Every value travels in batches: JSON as itself, anything else as ``{"$base64", "content_type"}``."""
        batch: dict[str, Any] = {}
        for key, value in mapping.items():
            full = self._full(key)
            if (
                self.codec.batchable
                and not isinstance(value, (bytes, bytearray, memoryview))
                and not is_envelope(value)
            ):
                self.codec.writer.dumps(value, full)  # the same refusals as set()
                batch[full] = value
            else:
                data, content_type = self.codec.encode(value, full)
                batch[full] = protocol.envelope(data, content_type)
        extra = {}
        if ttl is not None:
            extra["ttl"] = float(_seconds(ttl, "ttl"))
        if stale_ttl:
            extra["stale_ttl"] = float(_seconds(stale_ttl, "stale_ttl"))
        items = list(batch.items())

        def parse(reply: Reply) -> bool:
            return (
                reply.headers.get(protocol.HEADER_DEGRADED) not in protocol.NOT_STORED
                if reply.status == 204
                else _fail(reply)
            )

        calls = [
            Call(
                "POST",
                protocol.BATCH_SET_PATH,
                parse,
                _json_body({"items": dict(items[i : i + BATCH_CHUNK]), **extra}),
                JSON_TYPE,
                slow=True,
            )
            for i in range(0, len(items), BATCH_CHUNK)
        ]
        return Plan(calls, all)

    def delete_many_plan(self, keys: Iterable[str]) -> Plan:
        full = list(dict.fromkeys(self._full(k) for k in keys))
        calls = [
            Call(
                "POST",
                protocol.BATCH_DELETE_PATH,
                self._deleted,
                _json_body({"keys": full[i : i + BATCH_CHUNK]}),
                JSON_TYPE,
                slow=True,
            )
            for i in range(0, len(full), BATCH_CHUNK)
        ]
        return Plan(calls, sum)

    def child_scope(self, scope: str) -> str:
        return self._key_prefix + check_scope(scope)


# --- transports ------------------------------------------------------------------------------------


def _unavailable(socket_path: str, exc: BaseException) -> CacheUnavailable:
    reason = str(exc) or type(exc).__name__
    return CacheUnavailable(f"the agentcache sidecar at {socket_path} is unreachable: {reason}")


class _Guard:
    """What both transports do around an exchange: the call's deadline, and the socket's breaker."""

    def __init__(self, socket_path: str, timeout: float):
        self.socket_path = socket_path
        self.timeout = timeout
        self.breaker = breaker_for(socket_path, timeout)

    def deadline(self, call: Call) -> float:
        if self.breaker.open:
            raise CacheUnavailable(
                f"the agentcache sidecar at {self.socket_path} did not answer in time; "
                "skipping the cache until it answers again"
            )
        return max(self.timeout, SLOW_TIMEOUT) if call.slow else self.timeout

    def failed(self, exc: BaseException) -> CacheUnavailable:
        if isinstance(exc, TimeoutError) or getattr(exc, "timed_out", False):
            self.breaker.trip()
        return _unavailable(self.socket_path, exc)


class _AsyncTransport:
    """A pool of lean keep-alive connections (``wire.AsyncPool``), made lazily in the running loop.

    Used from another event loop than the one it was made in (e.g. two
    ``asyncio.run`` calls), the old pool is abandoned and a new one made.
    """

    def __init__(self, socket_path: str, timeout: float):
        self.socket_path = socket_path
        self.timeout = timeout
        self.guard = _Guard(socket_path, timeout)
        self._pool: wire.AsyncPool | None = None

    def _pool_for(self, loop: asyncio.AbstractEventLoop) -> wire.AsyncPool:
        if self._pool is None or self._pool.loop is not loop:
            self.abandon()
            self._pool = wire.AsyncPool(self.socket_path, self.timeout, loop)
        return self._pool

    async def send(self, call: Call) -> Any:
        import asyncio

        deadline = self.guard.deadline(call)
        pool = self._pool_for(asyncio.get_running_loop())
        try:
            answer = await pool.request(call.method, call.path, call.body, call.content_type, deadline, call.accept)
        except (wire.ConnectionFailed, OSError, TimeoutError) as exc:
            raise self.guard.failed(exc) from None
        return call.parse(Reply(answer.status, answer.headers, answer.body))

    async def execute(self, plan: Plan) -> Any:
        import asyncio

        results = await asyncio.gather(*(self.send(call) for call in plan.calls))
        outcome = plan.combine(results)
        return await self.execute(outcome) if isinstance(outcome, Plan) else outcome

    def abandon(self) -> None:
        """Close the pool's idle sockets; works without its event loop (which may be closed)."""
        if self._pool is not None:
            with contextlib.suppress(RuntimeError):
                self._pool.close()
        self._pool = None

    async def close(self) -> None:
        self.abandon()


class _SyncTransport:
    """A persistent connection per thread (and per process: a forked child reconnects)."""

    def __init__(self, socket_path: str, timeout: float):
        self.socket_path = socket_path
        self.timeout = timeout
        self.guard = _Guard(socket_path, timeout)
        self._local = threading.local()

    def _connection(self) -> wire.SyncConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.pid != os.getpid():
            conn = self._local.conn = wire.SyncConnection(self.socket_path, self.timeout)
        return conn

    def send(self, call: Call) -> Any:
        deadline = self.guard.deadline(call)
        try:
            answer = self._connection().request(
                call.method, call.path, call.body, call.content_type, deadline, call.accept
            )
        except wire.ConnectionFailed as exc:
            raise self.guard.failed(exc) from None
        return call.parse(Reply(answer.status, answer.headers, answer.body))

    def execute(self, plan: Plan) -> Any:
        outcome = plan.combine([self.send(call) for call in plan.calls])
        return self.execute(outcome) if isinstance(outcome, Plan) else outcome

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.pid == os.getpid():
            conn.close()
        self._local.conn = None


# --- the caches ----------------------------------------------------------------------------------


class _CacheFace:
    """What both caches show of themselves; the operations live in ``_Operations``."""

    _ops: _Operations

    @property
    def socket_path(self) -> str:
        return self._ops.socket_path

    @property
    def scope(self) -> str:
        return self._ops.scope

    def __repr__(self) -> str:
        return f"{type(self).__name__}(socket_path={self.socket_path!r}, scope={self.scope!r})"


class AsyncCache(_CacheFace):
    """The cache for asyncio code. One per process is enough (``agentcache.get_cache()``).

    ``serializer``: ``"json"`` (default), ``"msgpack"``, ``"pickle"`` (needs
    ``signing_key``) or a ``Serializer``; ``bytes`` values are always stored raw.
    """

    def __init__(
        self,
        socket_path: str | None = None,
        *,
        serializer: str | Serializer = "json",
        signing_key: bytes | str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        _ops: _Operations | None = None,
        _transport: _AsyncTransport | None = None,
    ):
        self._ops = _ops or _Operations(socket_path, serializer, signing_key, timeout)
        self._owns_transport = _transport is None
        self._transport = _transport or _AsyncTransport(self._ops.socket_path, self._ops.timeout)
        if self._owns_transport:  # a cache nobody closed (the process-wide one) is cleaned up quietly
            weakref.finalize(self, self._transport.abandon)
        self._twin: Cache | None = None

    async def get(self, key: str, default: Any = None) -> Any:
        """The value, or ``default`` on a miss (also for an expired value or one that fails to verify)."""
        return await self._transport.send(self._ops.get_call(key, default))

    async def lookup(self, key: str, allow_stale: bool = False) -> Lookup:
        """Like ``get`` but tells a miss from a stored ``None``, and can serve a stale value."""
        return await self._transport.send(self._ops.lookup_call(key, allow_stale))

    async def set(self, key: str, value: Any, ttl: float | None = None, *, stale_ttl: float | None = None) -> bool:
        """Store ``value``; ``ttl=None`` uses the sidecar's default_ttl, ``0`` never expires.

        ``stale_ttl`` keeps the value that much longer for stale reads. Returns
        False when the sidecar accepted but dropped the write (cache disabled or
        backend down without fallback).
        """
        return await self._transport.send(self._ops.set_call(key, value, ttl, stale_ttl))

    async def exists(self, key: str) -> bool:
        return await self._transport.send(self._ops.exists_call(key))

    async def delete(self, key: str) -> bool:
        """True when the key existed."""
        return await self._transport.send(self._ops.delete_call(key))

    async def clear(self) -> int:
        """Delete every key of this cache (of this scope only, for a scoped cache); returns how many."""
        return await self._transport.send(self._ops.clear_call())

    async def get_many(self, keys: Iterable[str], default: Any = None) -> dict[str, Any]:
        """``{key: value or default}`` for every key, in the order given."""
        plan = self._ops.get_many_plan(keys, default)
        return await self._transport.execute(plan) if plan.calls else {}

    async def set_many(
        self, mapping: Mapping[str, Any], ttl: float | None = None, *, stale_ttl: float | None = None
    ) -> bool:
        plan = self._ops.set_many_plan(mapping, ttl, stale_ttl)
        return await self._transport.execute(plan) if plan.calls else True

    async def delete_many(self, keys: Iterable[str]) -> int:
        plan = self._ops.delete_many_plan(keys)
        return await self._transport.execute(plan) if plan.calls else 0

    async def delete_pattern(self, pattern: str) -> int:
        """Delete the keys matching the glob ``pattern`` (within this scope); returns how many."""
        return await self._transport.send(self._ops.delete_pattern_call(pattern))

    async def ttl(self, key: str) -> float | None:
        """Remaining seconds, ``-1`` for no expiry, None on a miss."""
        return await self._transport.send(self._ops.ttl_call(key))

    async def keys(self, pattern: str = "*", limit: int = 1000) -> list[str]:
        """Keys matching ``pattern`` (sorted, at most ``limit``); for debugging, not for hot paths."""
        return await self._transport.send(self._ops.keys_call(pattern, limit))

    async def stats(self) -> dict:
        """The sidecar's statistics (for the whole sidecar, also from a scoped cache)."""
        return await self._transport.send(self._ops.stats_call())

    async def lock(self, key: str, ttl: float = 30.0) -> str | None:
        """Take the single-flight lock of ``key`` for ``ttl`` seconds: its token, or None if held."""
        return await self._transport.send(self._ops.lock_call(key, ttl))

    async def unlock(self, key: str, token: str) -> bool:
        """Release a lock taken with ``lock``; False when the token no longer holds it."""
        return await self._transport.send(self._ops.unlock_call(key, token))

    def scoped(self, scope: str) -> AsyncCache:
        """A view whose keys are ``scope + ":" + key``, confined to that prefix."""
        ops = _Operations(
            self._ops.socket_path, "json", None, self._ops.timeout, self._ops.codec, self._ops.child_scope(scope)
        )
        return AsyncCache(_ops=ops, _transport=self._transport)

    def as_sync(self) -> Cache:
        """A ``Cache`` with the same socket, serializer and scope (made once, then reused)."""
        if self._twin is None:
            self._twin = Cache(_ops=self._ops)
        return self._twin

    async def close(self) -> None:
        if self._owns_transport:
            await self._transport.close()
        if self._twin is not None:
            self._twin.close()

    async def __aenter__(self) -> AsyncCache:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


class Cache(_CacheFace):
    """The same operations as ``AsyncCache``, blocking, for synchronous code. Thread-safe."""

    def __init__(
        self,
        socket_path: str | None = None,
        *,
        serializer: str | Serializer = "json",
        signing_key: bytes | str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        _ops: _Operations | None = None,
        _transport: _SyncTransport | None = None,
    ):
        self._ops = _ops or _Operations(socket_path, serializer, signing_key, timeout)
        self._owns_transport = _transport is None
        self._transport = _transport or _SyncTransport(self._ops.socket_path, self._ops.timeout)
        self._twin: AsyncCache | None = None

    def get(self, key: str, default: Any = None) -> Any:
        return self._transport.send(self._ops.get_call(key, default))

    def lookup(self, key: str, allow_stale: bool = False) -> Lookup:
        return self._transport.send(self._ops.lookup_call(key, allow_stale))

    def set(self, key: str, value: Any, ttl: float | None = None, *, stale_ttl: float | None = None) -> bool:
        return self._transport.send(self._ops.set_call(key, value, ttl, stale_ttl))

    def exists(self, key: str) -> bool:
        return self._transport.send(self._ops.exists_call(key))

    def delete(self, key: str) -> bool:
        return self._transport.send(self._ops.delete_call(key))

    def clear(self) -> int:
        return self._transport.send(self._ops.clear_call())

    def get_many(self, keys: Iterable[str], default: Any = None) -> dict[str, Any]:
        plan = self._ops.get_many_plan(keys, default)
        return self._transport.execute(plan) if plan.calls else {}

    def set_many(self, mapping: Mapping[str, Any], ttl: float | None = None, *, stale_ttl: float | None = None) -> bool:
        plan = self._ops.set_many_plan(mapping, ttl, stale_ttl)
        return self._transport.execute(plan) if plan.calls else True

    def delete_many(self, keys: Iterable[str]) -> int:
        plan = self._ops.delete_many_plan(keys)
        return self._transport.execute(plan) if plan.calls else 0

    def delete_pattern(self, pattern: str) -> int:
        return self._transport.send(self._ops.delete_pattern_call(pattern))

    def ttl(self, key: str) -> float | None:
        return self._transport.send(self._ops.ttl_call(key))

    def keys(self, pattern: str = "*", limit: int = 1000) -> list[str]:
        return self._transport.send(self._ops.keys_call(pattern, limit))

    def stats(self) -> dict:
        return self._transport.send(self._ops.stats_call())

    def lock(self, key: str, ttl: float = 30.0) -> str | None:
        return self._transport.send(self._ops.lock_call(key, ttl))

    def unlock(self, key: str, token: str) -> bool:
        return self._transport.send(self._ops.unlock_call(key, token))

    def scoped(self, scope: str) -> Cache:
        ops = _Operations(
            self._ops.socket_path, "json", None, self._ops.timeout, self._ops.codec, self._ops.child_scope(scope)
        )
        return Cache(_ops=ops, _transport=self._transport)

    def as_async(self) -> AsyncCache:
        """An ``AsyncCache`` with the same socket, serializer and scope (made once, then reused)."""
        if self._twin is None:
            self._twin = AsyncCache(_ops=self._ops)
        return self._twin

    def close(self) -> None:
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


_default_cache: AsyncCache | None = None
_default_lock = threading.Lock()


def get_cache() -> AsyncCache:
    """The process-wide default ``AsyncCache`` on ``$AGENTCACHE_SOCKET`` (AgentUp's ``services.get_cache()``).

    Its session follows the running event loop; ``get_cache().as_sync()`` is
    the matching blocking ``Cache``.
    """
    global _default_cache
    with _default_lock:
        if _default_cache is None:
            _default_cache = AsyncCache()
        return _default_cache
