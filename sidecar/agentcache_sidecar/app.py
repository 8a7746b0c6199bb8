"""The HTTP API of docs/design.md §3, built by ``create_server``; handlers are small and delegate to ``CacheService``.

``server.py`` serves them on the Unix socket; the TCP listener of ``probes.py`` (the same server) reuses
``ready``.

Keys are taken from the *raw* request path so that percent-encoding is decoded
exactly once and strictly: ``/v1/keys/a%2Fb`` is the key ``a/b``, while a
literal ``/`` separates the key from a sub-resource (``/ttl``, ``/lock``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable
from json.encoder import encode_basestring_ascii
from typing import Any

from agentcache import protocol
from agentcache.protocol import (
    BATCH_MSGPACK_TYPE,
    BYTES_TYPE,
    ERR_BAD_JSON,
    ERR_BAD_TOKEN,
    ERR_LOCK_UNAVAILABLE,
    ERR_LOCKED,
    ERR_METHOD_NOT_ALLOWED,
    ERR_MISS,
    ERR_NOT_FOUND,
    ERR_NOT_HOLDER,
    ERR_TOO_LARGE,
    ERR_TOO_MANY_KEYS,
    HEADER_DEGRADED,
    HEADER_STALE,
    HEADER_TTL,
    JSON_TYPE,
    KEY_PATH_PREFIX,
    is_envelope,
)

from .backends.base import Entry, Fresh, ValueTooLarge
from .budget import Budget
from .config import Settings
from .keys import (
    ApiError,
    check_content_type,
    check_key,
    check_keys,
    check_pattern,
    check_seconds,
    decode_path_key,
    is_safe_content_type,
    parse_limit,
    parse_seconds,
)
from .metrics import SidecarMetrics
from .openapi import openapi
from .server import CacheServer, Handler, Limits, Request, Response, json_response
from .store import CacheService

log = logging.getLogger("agentcache.sidecar")
MAX_BATCH_KEYS = 10000
MAX_LIST_LIMIT = 10000
DEFAULT_LOCK_TTL = 30.0
SMALL_BODY = 65536
"""Bodies of other routes than values and batches (none is needed) are refused beyond this."""
BATCH_OBJECT_COST = 80
"""Bytes a parsed JSON value costs at least (a small int, an empty list); with the count of ``{[,:`` in a batch
body this bounds the memory and time its parse takes before it starts."""

SERVICE = "service"
"""Where ``health``/``ready``/``stats`` find the service in ``request.app``, on the socket and on TCP alike."""


def error_response(status: int, code: str, message: str) -> Response:
    return json_response({"error": code, "message": message}, status=status)


MISS_BODY = json.dumps({"error": ERR_MISS, "message": "no value for this key"}).encode()


def miss_response() -> Response:
    """The 404 of a miss: the most frequent error, so its body is encoded once."""
    return Response(404, MISS_BODY, {"Content-Type": JSON_TYPE})


def _observe(metrics: SidecarMetrics, op: str, result: str, started: float) -> None:
    metrics.observe_request(op, result, time.perf_counter() - started)


async def errors_as_json(request: Request, handler: Handler) -> Response:
    """Every failure is a JSON error; client mistakes are 4xx, and nothing leaks a traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(500, protocol.ERR_INTERNAL, "internal error; see the sidecar log")


class KeyApi:
    """Handlers of the ``/v1/keys`` and ``/v1/batch`` resources."""

    def __init__(self, service: CacheService, settings: Settings, metrics: SidecarMetrics, budget: Budget):
        self.service = service
        self.settings = settings
        self.metrics = metrics
        self.batch_bytes = budget.batch_bytes
        self._large_batch = asyncio.Semaphore(1)
        self.max_key = settings.sidecar.max_key_bytes
        self.max_value = settings.sidecar.max_value_bytes
        self.default_ttl = settings.cache.default_ttl
        self.routes = {
            ("", "GET"): self.get,
            ("", "HEAD"): self.head,
            ("", "PUT"): self.put,
            ("", "DELETE"): self.delete,
            (protocol.TTL_RESOURCE, "GET"): self.ttl,
            (protocol.LOCK_RESOURCE, "POST"): self.lock,
            (protocol.LOCK_RESOURCE, "DELETE"): self.unlock,
        }

    # --- single keys ------------------------------------------------------------------------------

    async def dispatch(self, request: Request) -> Response:
        raw_path = request.raw_path.split("?", 1)[0]
        key_part, slash, sub = raw_path[len(KEY_PATH_PREFIX) :].partition("/")
        key = decode_path_key(key_part, self.max_key)
        known = bool(sub) or not slash  # "/v1/keys/k/" names no resource
        handler = self.routes.get((sub, request.method)) if known else None
        if handler is None:
            if known and any(s == sub for s, _ in self.routes):
                return _not_allowed(request, sorted(m for s, m in self.routes if s == sub))
            raise ApiError(404, ERR_NOT_FOUND, f"no such resource: /v1/keys/{{key}}/{sub}")
        return await handler(request, key)

    async def get(self, request: Request, key: str) -> Response:
        started = time.perf_counter()
        allow_stale = bool(request.query_string) and request.query.get("allow_stale", "") in ("1", "true", "yes")
        entry = await self.service.get(key, allow_stale=allow_stale)
        if entry is None:
            _observe(self.metrics, "get", "miss", started)
            return miss_response()
        content_type = entry.content_type
        if not is_safe_content_type(content_type):  # stored metadata is data: never echo it raw as a header
            self.metrics.rejections.labels("bad_stored_content_type").inc()
            content_type = BYTES_TYPE
        headers = {"Content-Type": content_type, HEADER_TTL: _ttl_text(entry)}
        if not entry.is_fresh():
            headers[HEADER_STALE] = "1"
        _observe(self.metrics, "get", "hit", started)
        return Response(200, entry.value, headers)

    async def head(self, request: Request, key: str) -> Response:
        started = time.perf_counter()
        found = await self.service.exists(key)
        _observe(self.metrics, "exists", "hit" if found else "miss", started)
        return Response(200 if found else 404)

    async def put(self, request: Request, key: str) -> Response:
        started = time.perf_counter()
        ttl = parse_seconds(request.query.get("ttl"), "ttl", self.default_ttl)
        stale_ttl = parse_seconds(request.query.get("stale_ttl"), "stale_ttl", 0)
        if request.content_length is not None and request.content_length > self.max_value:
            raise ApiError(
                413,
                ERR_TOO_LARGE,
                f"value of {request.content_length} bytes exceeds max_value_bytes ({self.max_value})",
            )
        value = await request.read()
        if len(value) > self.max_value:
            raise ApiError(
                413, ERR_TOO_LARGE, f"value of {len(value)} bytes exceeds max_value_bytes ({self.max_value})"
            )
        content_type = check_content_type(request.headers.get("Content-Type", BYTES_TYPE), key)
        outcome = await self._store(self.service.set(key, Entry.create(value, content_type, ttl, stale_ttl)))
        _observe(self.metrics, "set", outcome.degraded or "ok", started)
        return _write_response(outcome)

    async def _store(self, write: Awaitable):
        try:
            return await write
        except ValueTooLarge as exc:
            raise ApiError(413, ERR_TOO_LARGE, str(exc)) from None

    async def delete(self, request: Request, key: str) -> Response:
        started = time.perf_counter()
        deleted = await self.service.delete(key)
        _observe(self.metrics, "delete", "ok" if deleted else "miss", started)
        if not deleted:
            return miss_response()
        return Response(204)

    async def ttl(self, request: Request, key: str) -> Response:
        started = time.perf_counter()
        entry = await self.service.get(key, count=False)
        _observe(self.metrics, "ttl", "hit" if entry else "miss", started)
        if entry is None:
            return miss_response()
        return json_response({"ttl": _ttl_number(entry)})

    async def lock(self, request: Request, key: str) -> Response:
        started = time.perf_counter()
        ttl = parse_seconds(request.query.get("ttl"), "ttl", DEFAULT_LOCK_TTL)
        if ttl <= 0:
            raise ApiError(400, protocol.ERR_BAD_TTL, "a lock needs a ttl greater than 0")
        token = base64.urlsafe_b64encode(os.urandom(18)).decode("ascii")  # secrets.token_urlsafe(18), lighter
        ttl = min(ttl, self.service.max_lock_ttl)
        taken = await self.service.acquire_lock(key, token, ttl)
        if taken is False:
            _observe(self.metrics, "lock", "held", started)
            return error_response(409, ERR_LOCKED, "another caller holds this lock")
        if taken is None:
            _observe(self.metrics, "lock", "unavailable", started)
            return error_response(409, ERR_LOCK_UNAVAILABLE, "no backend could take this lock; compute without it")
        degraded = not self.service.primary_up  # held in the memory fallback: only this pod sees it
        _observe(self.metrics, "lock", "degraded" if degraded else "ok", started)
        return json_response({"token": token, "ttl": ttl, "degraded": degraded})

    async def unlock(self, request: Request, key: str) -> Response:
        started = time.perf_counter()
        token = request.query.get("token", "")
        if not token:
            raise ApiError(400, ERR_BAD_TOKEN, "pass the lock's token as ?token=")
        released = await self.service.release_lock(key, token)
        _observe(self.metrics, "unlock", "ok" if released else "conflict", started)
        if not released:
            return error_response(409, ERR_NOT_HOLDER, "this token does not hold the lock (expired or taken)")
        return Response(204)

    # --- collections -----------------------------------------------------------------------------

    async def delete_keys(self, request: Request) -> Response:
        started = time.perf_counter()
        pattern = request.query.get("pattern")
        if pattern is None:
            deleted = await self.service.clear()
            op = "clear"
        else:
            deleted = await self.service.delete_pattern(check_pattern(pattern, self.max_key))
            op = "delete_pattern"
        _observe(self.metrics, op, "ok", started)
        return json_response({"deleted": deleted})

    async def list_keys(self, request: Request) -> Response:
        started = time.perf_counter()
        pattern = check_pattern(request.query.get("pattern", "*"), self.max_key)
        limit = parse_limit(request.query.get("limit"), 1000, MAX_LIST_LIMIT)
        keys = await self.service.list_keys(pattern, limit)
        _observe(self.metrics, "list", "ok", started)
        return json_response({"keys": keys})

    def _batch_slot(self, request: Request) -> contextlib.AbstractAsyncContextManager[None]:
        """Large batches take turns, so the memory their parses take is counted once."""
        return self._large_batch if request.content_length > SMALL_BODY else contextlib.nullcontext()

    async def _json_body(self, request: Request, field: str, kind: type) -> tuple[dict, Any]:
        raw = await request.read()
        cost = len(raw) + BATCH_OBJECT_COST * sum(map(raw.count, (b"{", b"[", b",", b":")))
        if cost > 2 * self.batch_bytes:
            raise ApiError(
                413,
                ERR_TOO_LARGE,
                f"this batch would take about {cost} bytes to parse; the limit is "
                f"{2 * self.batch_bytes}: send fewer or smaller values per batch",
            )
        try:
            body = json.loads(await request.text(), parse_constant=_reject_constant)
        except (ValueError, RecursionError, LookupError):  # bad syntax or encoding, too deep, unknown charset
            raise ApiError(400, ERR_BAD_JSON, "the request body is not valid JSON (or nested too deeply)") from None
        if not isinstance(body, dict) or not isinstance(body.get(field), kind):
            raise ApiError(
                400,
                ERR_BAD_JSON,
                f"the body must be a JSON object with {field!r} ({'a list' if kind is list else 'an object'})",
            )
        if len(body[field]) > MAX_BATCH_KEYS:
            raise ApiError(400, ERR_TOO_MANY_KEYS, f"at most {MAX_BATCH_KEYS} keys per batch")
        return body, body[field]

    async def batch_get(self, request: Request) -> Response:
        started = time.perf_counter()
        _, keys = await self._json_body(request, "keys", list)
        keys = check_keys(keys, self.max_key)
        values = await self.service.get_many(keys)
        size = sum(len(found[0]) for found in values if found is not None)
        if size > self.batch_bytes:
            raise ApiError(
                413,
                ERR_TOO_LARGE,
                f"these values hold {size} bytes; a batch answer holds at most "
                f"{self.batch_bytes}: ask for fewer keys at a time",
            )
        _observe(self.metrics, "get_many", "ok", started)
        if _accepts(request, BATCH_MSGPACK_TYPE):
            return Response(200, _msgpack_values(values), MSGPACK_ANSWER_HEADERS)
        return Response(200, _json_values(dict(zip(keys, values))), JSON_ANSWER_HEADERS)  # a key asked twice: once

    async def batch_set(self, request: Request) -> Response:
        async with self._batch_slot(request):
            return await self._batch_set(request)

    async def _batch_set(self, request: Request) -> Response:
        started = time.perf_counter()
        body, items = await self._json_body(request, "items", dict)
        ttl = check_seconds(body.get("ttl", self.default_ttl), "ttl")
        stale_ttl = check_seconds(body.get("stale_ttl", 0), "stale_ttl")
        now = time.time()
        entries = []
        for key, value in items.items():
            data, content_type = _from_json_value(check_key(key, self.max_key), value)
            if len(data) > self.max_value:
                raise ApiError(
                    413,
                    ERR_TOO_LARGE,
                    f"the value of {key!r} is {len(data)} bytes; max_value_bytes is {self.max_value}",
                )
            entries.append((key, Entry.create(data, content_type, ttl, stale_ttl, now)))
        outcome = await self._store(self.service.set_many(entries))
        _observe(self.metrics, "set_many", outcome.degraded or "ok", started)
        return _write_response(outcome)

    async def batch_delete(self, request: Request) -> Response:
        started = time.perf_counter()
        _, keys = await self._json_body(request, "keys", list)
        deleted = await self.service.delete_many(check_keys(keys, self.max_key))
        _observe(self.metrics, "delete_many", "ok", started)
        return json_response({"deleted": deleted})


def _ttl_number(entry: Entry) -> float:
    remaining = entry.remaining_ttl()
    return -1 if remaining < 0 else round(remaining, 3)


def _ttl_text(entry: Entry) -> str:
    return str(_ttl_number(entry))


def _write_response(outcome) -> Response:
    headers = {HEADER_DEGRADED: outcome.degraded} if outcome.degraded else None
    return Response(204, b"", headers)


JSON_ANSWER_HEADERS = {"Content-Type": f"{JSON_TYPE}; charset=utf-8"}
MSGPACK_ANSWER_HEADERS = {"Content-Type": BATCH_MSGPACK_TYPE}


def _msgpack_values(values: list[Fresh | None]) -> bytes:
    """The ``BATCH_MSGPACK_TYPE`` answer (``protocol``): the stored bytes as they are, in the order asked."""
    import msgpack  # with the first batch an SDK asks this way: a sidecar that serves none never loads it

    indexes: dict[str, int] = {}
    data: list[bytes | None] = []
    types: list[int] = []
    for found in values:
        if found is None:
            data.append(None)
            types.append(0)
        else:
            data.append(found[0])
            index = indexes.get(found[1])
            if index is None:
                index = indexes[found[1]] = len(indexes)
            types.append(index)
    return msgpack.packb(
        {
            protocol.BATCH_VALUES_FIELD: data,
            protocol.BATCH_TYPES_FIELD: bytes(types) if len(indexes) <= 256 else types,
            protocol.BATCH_CONTENT_TYPES_FIELD: list(indexes),
        }
    )


def _accepts(request: Request, media_type: str) -> bool:
    """Whether the request's ``Accept`` names ``media_type`` (exactly; parameters and weights aside)."""
    accept = request.headers.get("Accept", "")
    return any(part.split(";", 1)[0].strip().lower() == media_type for part in accept.split(",")) if accept else False


def _is_json_type(content_type: str, known: dict[str, bool] = {}) -> bool:  # noqa: B006 (a memo)
    is_json = known.get(content_type)
    if is_json is None:
        is_json = content_type.split(";")[0].strip() == JSON_TYPE
        if len(known) < 1024:
            known[content_type] = is_json
    return is_json


def _json_value(found: Fresh | None) -> bytes:
    """A stored JSON value as itself (its bytes, once checked to be strict JSON in UTF-8); anything else as
    ``{"$base64": ..., "content_type": ...}``.

    A stored JSON object that itself looks like that wrapper is wrapped too, so a reader is never misled.
    """
    if found is None:
        return b"null"
    data, content_type = found
    if _is_json_type(content_type):
        try:
            value = _STRICT_JSON.decode(data.decode("utf-8"))
        except (ValueError, RecursionError):  # not JSON after all (or too deep to read): send the bytes
            pass
        else:
            if not is_envelope(value):
                return data
    return b"".join(
        (
            b'{"' + protocol.BASE64_FIELD.encode() + b'":"',
            binascii.b2a_base64(data, newline=False),
            b'","' + protocol.CONTENT_TYPE_FIELD.encode() + b'":',
            encode_basestring_ascii(content_type).encode("ascii"),
            b"}",
        )
    )


def _json_values(answer: dict[str, Fresh | None]) -> bytes:
    """``{"values": {key: value or null}}``, joined from the stored bytes (no value is decoded and encoded
    again: a batch of 1,000 values costs a few hundred microseconds less)."""
    members = [
        encode_basestring_ascii(key).encode("ascii") + b":" + _json_value(found) for key, found in answer.items()
    ]
    return b'{"values":{' + b",".join(members) + b"}}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant)
"""JSON and nothing more (no NaN, Infinity): made once, as ``json.loads`` with an argument makes one per call."""


def _from_json_value(key: str, value: Any) -> tuple[bytes, str]:
    """``{"$base64": ...}`` (optionally with ``content_type``) is bytes; any other JSON value is stored as JSON."""
    if is_envelope(value):
        content_type = check_content_type(value.get(protocol.CONTENT_TYPE_FIELD, BYTES_TYPE), key)
        try:
            return protocol.open_envelope(value)[0], content_type
        except ValueError:
            raise ApiError(400, ERR_BAD_JSON, f"the $base64 value of {key!r} is not valid base64") from None
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), JSON_TYPE
    except (UnicodeEncodeError, RecursionError, ValueError):
        raise ApiError(
            400, ERR_BAD_JSON, f"the value of {key!r} cannot be stored as JSON (lone surrogate or too deeply nested)"
        ) from None


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


async def ready(request: Request) -> Response:
    service = request.app[SERVICE]
    body = {
        "ready": service.ready,
        "backend": service.backend.name,
        "backend_up": service.primary_up,
        "circuit": "closed" if service.primary_up else "open",
        "fallback_active": not service.primary_up and service.fallback is not None,
        "writes_failing": service.writes_failing,
    }
    return json_response(body, status=200 if service.ready else 503)


async def stats(request: Request) -> Response:
    return json_response(await request.app[SERVICE].stats())


def create_server(
    settings: Settings, service: CacheService, metrics: SidecarMetrics, budget: Budget | None = None
) -> CacheServer:
    """The cache API (served on the Unix socket): its routes, limits and shared state."""
    budget = budget or Budget.of(settings)
    api = KeyApi(service, settings, metrics, budget)
    exact: dict[tuple[str, str], Handler] = {
        ("GET", protocol.KEYS_PATH): api.list_keys,
        ("DELETE", protocol.KEYS_PATH): api.delete_keys,
        ("POST", protocol.BATCH_GET_PATH): api.batch_get,
        ("POST", protocol.BATCH_SET_PATH): api.batch_set,
        ("POST", protocol.BATCH_DELETE_PATH): api.batch_delete,
        ("GET", protocol.STATS_PATH): stats,
        ("GET", protocol.HEALTH_PATH): health,
        ("GET", protocol.READY_PATH): ready,
        ("GET", protocol.OPENAPI_PATH): openapi,
    }
    not_allowed = {path: _method_not_allowed(sorted(m for m, p in exact if p == path)) for _, path in exact}

    def route(method: str, path: str) -> Handler:
        handler: Handler
        if path.startswith(KEY_PATH_PREFIX) and len(path) > len(KEY_PATH_PREFIX):
            handler = api.dispatch
        else:
            handler = exact.get((method, path)) or not_allowed.get(path, _not_found)
        return lambda request: errors_as_json(request, handler)

    side = settings.sidecar
    batch_paths = {
        path.encode() for path in (protocol.BATCH_GET_PATH, protocol.BATCH_SET_PATH, protocol.BATCH_DELETE_PATH)
    }

    def body_limit(url: bytes) -> tuple[int, str]:
        if url.startswith(KEY_PATH_PREFIX.encode()):
            return side.max_value_bytes, "a value (max_value_bytes)"
        if url.partition(b"?")[0] in batch_paths:
            return budget.batch_bytes, "a batch (max_batch_bytes)"
        return SMALL_BODY, "a request body"

    limits = Limits(
        max_line=max(8190, 3 * side.max_key_bytes + 1024),
        header_timeout=side.header_timeout,
        body_timeout=side.body_timeout,
        idle_timeout=side.idle_timeout,
        send_timeout=side.send_timeout,
        max_pipeline=side.max_pipeline,
    )
    return CacheServer(
        route,
        {SERVICE: service},
        budget,
        limits,
        body_limit,
        on_reject=lambda reason: metrics.rejections.labels(reason).inc(),
    )


async def _not_found(request: Request) -> Response:
    raise ApiError(404, ERR_NOT_FOUND, f"no such resource: {request.path}")


def _not_allowed(request: Request, allowed: list[str]) -> Response:
    """405 with the ``Allow`` header RFC 9110 requires."""
    message = f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}"
    body = json.dumps({"error": ERR_METHOD_NOT_ALLOWED, "message": message}).encode()
    return Response(405, body, {"Content-Type": JSON_TYPE, "Allow": ", ".join(allowed)})


def _method_not_allowed(allowed: list[str]) -> Handler:
    async def handler(request: Request) -> Response:
        return _not_allowed(request, allowed)

    return handler
