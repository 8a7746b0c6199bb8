"""The HTTP/1.1 server of the cache API on the Unix socket: asyncio + httptools.

aiohttp's server costs about twice a Valkey round trip per request, which is
most of the sidecar's latency; this protocol parses requests with httptools
(llhttp) and calls the same handlers ``app.py`` defines, with a small request
object that offers what they read (method, raw path, query, headers, body)
and the ``Response`` objects they return turned into bytes.

Invariants: requests on one connection are answered in order, one at a time;
a body is read whole before its handler runs and is refused with 413 as soon
as it passes its route's limit (declared or sent), with 503 when all bodies
being read would pass the budget's ``body_bytes``; request lines and headers
are bounded (414, 431) and counted as they arrive; a request the parser cannot
read gets a JSON 400 and the connection is closed; a connection beyond the
budget's ``connections`` gets a JSON 503 and is closed, never reset; an answer
that cannot be encoded is a 500 for that request, the connection lives on;
``close()`` stops accepting, lets in-flight requests finish (up to a timeout)
and then closes every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl

import httptools
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from agentcache.protocol import (
    ERR_BAD_BODY,
    ERR_BAD_QUERY,
    ERR_BAD_REQUEST,
    ERR_BODY_TIMEOUT,
    ERR_BUSY,
    ERR_HEADER_TIMEOUT,
    ERR_HEADERS_TOO_LARGE,
    ERR_INTERNAL,
    ERR_TOO_LARGE,
    ERR_URI_TOO_LONG,
    JSON_TYPE,
)

from .budget import Budget
from .keys import ApiError

log = logging.getLogger("agentcache.sidecar")

Handler = Callable[["Request"], Awaitable["Response"]]
Router = Callable[[str, str], Handler]


class Response:
    """An answer: status, headers (Content-Length is computed), body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}


JSON_HEADERS = {"Content-Type": f"{JSON_TYPE}; charset=utf-8"}


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data).encode(), JSON_HEADERS)


class Request:
    """What the cache API handlers read of a request (the names follow ``aiohttp.web.Request``)."""

    __slots__ = ("method", "raw_path", "path", "query_string", "headers", "_body", "_query", "app", "reserved")

    def __init__(self, method: str, raw_path: str, headers: CIMultiDictProxy, body: bytes, app: dict):
        self.method = method
        self.raw_path = raw_path
        self.path, _, self.query_string = raw_path.partition("?")
        self.headers = headers
        self._body = body
        self._query: MultiDictProxy | None = None
        self.app = app
        self.reserved = 0

    @property
    def query(self) -> MultiDictProxy:
        """The query's parameters; a name given twice is a 400 (which of its values counts is ambiguous)."""
        if self._query is None:
            pairs = parse_qsl(self.query_string, keep_blank_values=True)
            if len({name for name, _ in pairs}) != len(pairs):
                raise ApiError(400, ERR_BAD_QUERY, "a query parameter is given more than once")
            self._query = MultiDictProxy(MultiDict(pairs))
        return self._query

    @property
    def content_length(self) -> int:
        return len(self._body)

    async def read(self) -> bytes:
        return self._body

    async def text(self) -> str:
        charset = "utf-8"
        for part in self.headers.get("Content-Type", "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip('"')
        return self._body.decode(charset)


def _json_error(status: int, code: str, message: str) -> bytes:
    body = json.dumps({"error": code, "message": message}).encode()
    return _encode(status, JSON_HEADERS, body, close=True)


_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _encode(
    status: int, headers: Any, body: bytes, close: bool = False, head: bool = False, length: int | None = None
) -> bytes:
    """The answer's bytes (only its head with ``head``); a header that is not printable ASCII is a ValueError."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    for name, value in headers.items():
        if name in ("Content-Length", "Transfer-Encoding", "Connection"):
            continue
        if not (SAFE_HEADER.match(name) and SAFE_HEADER.match(value)):
            raise ValueError(f"header {name!r} holds characters an HTTP header cannot carry")
        lines.append(f"{name}: {value}")
    if status != 204:
        lines.append(f"Content-Length: {len(body) if length is None else length}")
    if close:
        lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data if head or status == 204 else data + body


class _Refused(Exception):
    """A request refused while it is being read (too large, malformed)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.answer = _json_error(status, code, message)


HEAD_SLICE = 4096
"""Bytes fed to the parser at a time outside bodies: a head is measured to within this, as it arrives."""
BODY_SLICE = 65536
SMALL_ANSWER = 65536
"""Answers up to this size are always sent; larger ones need room in the budget of unsent answers."""
NO_DEADLINE = float("inf")
SWEEP_INTERVAL = 0.5
REFUSED_LINGER = 1.0
"""Seconds a refused connection is kept to read what the client still sends, so its answer is not lost to a reset."""
SAFE_HEADER = re.compile(r"^[\x20-\x7e]*$")


class HttpProtocol(asyncio.Protocol):
    """One connection. Invariants beyond the module's:

    - at most ``max_pipeline`` requests wait for their answers; beyond that reading pauses;
    - the next request is handled only once the previous answer has drained below the transport's
      high-water mark (real backpressure): a client that does not read holds one answer, not all of them;
    - every state has a deadline (first request and head ``header_timeout``, body ``body_timeout``, between
      requests ``idle_timeout``, unread answer ``send_timeout``), enforced by the server's sweeper;
    - a client that half-closes after its requests still gets every answer, then the connection closes.
    """

    transport: asyncio.Transport  # set by connection_made, which asyncio calls before anything else

    def __init__(self, server: CacheServer):
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.worker: asyncio.Task | None = None
        self.busy = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.read_deadline = NO_DEADLINE
        self.write_deadline = NO_DEADLINE
        self.timeout_code = "idle"
        self._refused = False
        self._in_head = False
        self._in_message = False
        self._pipeline_paused = False
        self._held = b""  # bytes received but not parsed while the pipeline is full
        self._eof = False
        self._head_bytes = 0
        self._reset()

    def _reset(self) -> None:
        self._url: list[bytes] = []
        self._head_size = 0
        self._headers: CIMultiDict = CIMultiDict()
        self._body: list[bytes] = []
        self._body_size = 0
        self._body_left: int | None = None
        self._body_limit: tuple[int, str] = (0, "")
        self._reserved = 0

    def _expect(self, seconds: float, code: str) -> None:
        self.read_deadline = self.server.now() + seconds
        self.timeout_code = code

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream transport (uvloop's is not a subclass)
        server = self.server
        if len(server.connections) >= server.budget.connections:
            self._refused = True
            server.reject("connections")
            self.transport.write(
                _json_error(
                    503, ERR_BUSY, f"the sidecar serves at most {server.budget.connections} connections; retry shortly"
                )
            )
            self._linger()
            return
        server.connections.add(self)
        self._expect(server.header_timeout, ERR_HEADER_TIMEOUT)
        self.worker = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc) -> None:
        self.server.connections.discard(self)
        self.server.lingering.discard(self)
        self.server.write_paused.discard(self)
        self.server.release_body(self._reserved)
        self._reserved = 0
        self.writable.set()
        self.queue.put_nowait(None)

    def pause_writing(self) -> None:
        self.writable.clear()
        self.server.write_paused.add(self)
        self.write_deadline = self.server.now() + self.server.send_timeout

    def resume_writing(self) -> None:
        self.writable.set()
        self.server.write_paused.discard(self)
        self.write_deadline = NO_DEADLINE

    def eof_received(self) -> bool:
        """Half-closed: answer what was asked, then close (True keeps the transport open for writing)."""
        self.read_deadline = NO_DEADLINE
        self._eof = True
        if not self._held:
            self.queue.put_nowait(None)
        return True

    def data_received(self, data: bytes) -> None:
        """Parse as the bytes arrive; once ``max_pipeline`` requests wait, keep the rest unparsed for later."""
        pos, size = 0, len(data)
        while pos < size and not self._refused and not self._pipeline_paused:
            if self._in_message and not self._in_head:
                take = self._body_left or BODY_SLICE  # unknown (chunked) or nothing left: a slice
            else:
                take = HEAD_SLICE
            chunk = data[pos : pos + take] if pos or take < size else data
            was_in_head = self._in_head
            pos += len(chunk)
            if not self._feed(chunk):
                return
            if self._in_head:
                self._head_bytes = self._head_bytes + len(chunk) if was_in_head else len(chunk)
                if self._head_bytes > self.server.max_head + HEAD_SLICE:
                    self._refuse(
                        _Refused(
                            431,
                            ERR_HEADERS_TOO_LARGE,
                            f"the request line and headers exceed {self.server.max_head} bytes",
                        )
                    )
        if pos < size and self._pipeline_paused and not self._refused:
            self._held = data[pos:]

    def _drained(self) -> None:
        """The worker made room in the pipeline: parse what was held back, then read again."""
        self._pipeline_paused = False
        held, self._held = self._held, b""
        if held:
            self.data_received(held)
        if self._eof and not self._held:
            self.queue.put_nowait(None)
        elif not self._pipeline_paused and not self._refused and not self._eof:
            self.transport.resume_reading()

    def _feed(self, chunk: bytes) -> bool:
        try:
            self.parser.feed_data(chunk)
        except httptools.HttpParserUpgrade:
            self._refuse(_Refused(400, ERR_BAD_REQUEST, "protocol upgrades are not supported"))
        except httptools.HttpParserError as exc:  # a callback's exception arrives as the cause
            refused = exc.__cause__ or exc.__context__
            self._refuse(
                refused
                if isinstance(refused, _Refused)
                else _Refused(400, ERR_BAD_REQUEST, f"malformed HTTP request: {exc}")
            )
        return not self._refused

    def _refuse(self, refused: _Refused) -> None:
        """Answer after the requests already queued, then close (what the client still sends is discarded)."""
        self._refused = True
        self.read_deadline = NO_DEADLINE
        self.server.reject(refused.code)
        self.queue.put_nowait(refused.answer)
        self.queue.put_nowait(None)

    def _linger(self) -> None:
        """End our side, but read (and drop) what the client still sends for a moment before closing:
        closing a Unix socket with unread data resets it, and the client would lose its answer."""
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._expect(REFUSED_LINGER, "refused")
        self.server.lingering.add(self)

    def time_out(self) -> None:
        """The sweeper found the read deadline passed."""
        if self._refused:
            self.transport.close()
        elif self._in_message:
            self.server.reject(self.timeout_code)
            self._refuse(_Refused(408, self.timeout_code, "the request was not sent in time"))
        else:
            self.server.reject(self.timeout_code)
            self.read_deadline = NO_DEADLINE
            self.queue.put_nowait(None)

    # --- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = self._in_head = True
        self._head_bytes = 0
        self._expect(self.server.header_timeout, ERR_HEADER_TIMEOUT)

    def _count_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self.server.max_head:
            raise _Refused(
                431, ERR_HEADERS_TOO_LARGE, f"the request line and headers exceed {self.server.max_head} bytes"
            )

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        if sum(map(len, self._url)) > self.server.max_line:
            raise _Refused(414, ERR_URI_TOO_LONG, f"the request line exceeds {self.server.max_line} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        self._headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._expect(self.server.body_timeout, ERR_BODY_TIMEOUT)
        encoding = self._headers.get("Content-Encoding", "identity").lower()
        if encoding != "identity":
            raise _Refused(400, ERR_BAD_BODY, f"compressed request bodies ({encoding}) are not supported")
        self._body_limit = self.server.body_limit(b"".join(self._url))
        declared = self._headers.get("Content-Length")
        if declared is not None and declared.isdigit():
            self._body_left = int(declared)
            self._reserve(self._body_left)
        idle = not self.busy and self.queue.empty()  # an interim answer must not overtake queued ones
        if idle and self._headers.get("Expect", "").lower() == "100-continue":  # curl waits a second otherwise
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _reserve(self, size: int) -> None:
        """Room for ``size`` more body bytes: within this route's limit and the budget of all bodies."""
        limit, name = self._body_limit
        if self._body_size + size > limit:
            raise _Refused(413, ERR_TOO_LARGE, f"{name} of {self._body_size + size} bytes exceeds {limit} bytes")
        if size > self._reserved - self._body_size:
            more = size - (self._reserved - self._body_size)
            if not self.server.reserve_body(more):
                raise _Refused(503, ERR_BUSY, "the sidecar is reading too many request bodies; retry shortly")
            self._reserved += more

    def on_body(self, body: bytes) -> None:
        if self._body_left is None:
            self._reserve(len(body))
        else:
            self._body_left -= len(body)
        self._body_size += len(body)
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = self._in_head = False
        self.read_deadline = NO_DEADLINE
        method = self.parser.get_method().decode("ascii")
        raw_path = b"".join(self._url).decode("ascii")  # llhttp refuses any other byte in a URL
        request = Request(method, raw_path, CIMultiDictProxy(self._headers), b"".join(self._body), self.server.app)
        request.reserved = self._reserved
        self.queue.put_nowait((request, self.parser.should_keep_alive()))
        self._reset()
        if self.queue.qsize() >= self.server.max_pipeline and not self._pipeline_paused:
            self._pipeline_paused = True
            self.transport.pause_reading()

    # --- answering -------------------------------------------------------------------------------

    async def _serve(self) -> None:
        try:
            await self._answer_all()
        finally:
            while not self.queue.empty():  # what a closed connection left unanswered
                item = self.queue.get_nowait()
                if isinstance(item, tuple):
                    self.server.release_body(item[0].reserved)
            if self._refused and not self.transport.is_closing():
                self.server.connections.discard(self)
                self._linger()
            else:
                self.transport.close()

    async def _answer_all(self) -> None:
        while True:
            item = await self.queue.get()
            if self._pipeline_paused and self.queue.qsize() < self.server.max_pipeline // 2 + 1:
                self._drained()
            if item is None:
                return
            await self.writable.wait()
            if self.transport.is_closing():
                if isinstance(item, tuple):
                    self.server.release_body(item[0].reserved)
                return
            if isinstance(item, bytes):
                self.transport.write(item)
                continue
            request, keep_alive = item
            self.busy = True
            try:
                response = await self.server.handle(request)
            finally:
                self.busy = False
                self.server.release_body(request.reserved)
            if self.transport.is_closing():
                return
            self._send(request, response, keep_alive)
            if not self.queue.empty():
                await asyncio.sleep(0)  # one request at a time per connection: others get their turn
            if not keep_alive or self.server.closing:
                return
            if self.queue.empty() and not self._in_message and not self._refused:
                self._expect(self.server.idle_timeout, "idle")

    def _send(self, request: Request, response: Response, keep_alive: bool) -> None:
        """Write one answer; a too-large one when unsent answers fill the budget is a 503, a broken one a 500."""
        body = response.body
        if len(body) > SMALL_ANSWER and self.server.unsent_bytes() + len(body) > self.server.budget.answer_bytes:
            self.server.reject("answer_budget")
            response = _busy_answer()
        try:
            head = _encode(
                response.status, response.headers, b"", close=not keep_alive, head=True, length=len(response.body)
            )
        except (UnicodeEncodeError, ValueError, TypeError):
            log.exception("cannot encode the answer to %s %s", request.method, request.path)
            self.server.reject("bad_answer")
            response = Response(
                500,
                json.dumps(
                    {"error": ERR_INTERNAL, "message": "the answer could not be encoded; see the sidecar log"}
                ).encode(),
                JSON_HEADERS,
            )
            head = _encode(
                response.status, response.headers, b"", close=not keep_alive, head=True, length=len(response.body)
            )
        body = response.body if request.method != "HEAD" and response.status != 204 else b""
        if len(body) <= SMALL_ANSWER:
            self.transport.write(head + body)  # one write, one packet: most answers are small
        else:
            self.transport.write(head)
            self.transport.write(body)


def _busy_answer() -> Response:
    return Response(
        503,
        json.dumps({"error": ERR_BUSY, "message": "too many answers are waiting to be read; retry shortly"}).encode(),
        JSON_HEADERS,
    )


@dataclass(frozen=True)
class Limits:
    """What the server allows one client: sizes (bytes), deadlines (seconds), requests read ahead."""

    max_line: int
    max_head: int = 16384
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 60.0
    send_timeout: float = 30.0
    max_pipeline: int = 16


def _ip_family(host: str) -> socket.AddressFamily | None:
    """The family of an IP address, None for a host name."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


class CacheServer:
    """Serves ``route(method, path)``'s handlers on a Unix socket (or TCP: the probes' listener), within ``budget``.

    ``body_limit(url)`` is the largest body a request to ``url`` may carry, and what to call it in a 413.
    """

    def __init__(
        self,
        route: Router,
        app: dict,
        budget: Budget,
        limits: Limits,
        body_limit: Callable[[bytes], tuple[int, str]],
        on_reject: Callable[[str], None] = lambda reason: None,
    ):
        self.route = route
        self.app = app
        self.budget = budget
        self.body_limit = body_limit
        self.reject = on_reject
        self.max_line = limits.max_line
        self.max_head = max(limits.max_head, limits.max_line)
        self.header_timeout = limits.header_timeout
        self.body_timeout = limits.body_timeout
        self.idle_timeout = limits.idle_timeout
        self.send_timeout = limits.send_timeout
        self.max_pipeline = limits.max_pipeline
        self.connections: set[HttpProtocol] = set()
        self.lingering: set[HttpProtocol] = set()
        self.write_paused: set[HttpProtocol] = set()
        self.body_bytes = 0
        self.closing = False
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task | None = None
        self.now = time.monotonic

    def reserve_body(self, size: int) -> bool:
        if self.body_bytes + size > self.budget.body_bytes:
            return False
        self.body_bytes += size
        return True

    def release_body(self, size: int) -> None:
        self.body_bytes -= size

    def unsent_bytes(self) -> int:
        """Bytes of answers waiting in connections whose clients read too slowly (the others hold < 64 KiB)."""
        return sum(conn.transport.get_write_buffer_size() for conn in self.write_paused)

    async def handle(self, request: Request) -> Response:
        return await self.route(request.method, request.path)(request)

    async def start(self, socket_path: str) -> None:
        """Serve on the Unix socket ``socket_path``."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(
            lambda: HttpProtocol(self), socket_path, backlog=min(4096, self.budget.connections)
        )
        self._sweeper = loop.create_task(self._sweep_forever(), name="connection-deadlines")

    async def start_tcp(self, host: str, port: int) -> None:
        """Serve on TCP ``host:port`` (the same protocol, limits and deadlines as on the socket).

        An IP address is bound here, without the resolver: uvloop resolves on libuv's thread pool, which would
        start four threads that the sidecar never needs again.
        """
        loop = asyncio.get_running_loop()
        backlog = min(4096, self.budget.connections)
        family = _ip_family(host)
        if family is None:
            self._server = await loop.create_server(lambda: HttpProtocol(self), host, port, backlog=backlog)
        else:
            sock = socket.create_server((host, port), family=family, backlog=backlog)
            self._server = await loop.create_server(lambda: HttpProtocol(self), sock=sock, backlog=backlog)
        self._sweeper = loop.create_task(self._sweep_forever(), name="tcp-connection-deadlines")

    async def _sweep_forever(self) -> None:
        """Enforce every connection's deadlines (a timer per connection would cost more than this scan)."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = self.now()
            for conn in list(self.connections) + list(self.lingering):
                if now > conn.write_deadline:
                    self.reject("send_timeout")
                    conn.transport.abort()
                elif now > conn.read_deadline:
                    conn.time_out()

    async def close(self, timeout: float) -> None:
        """Stop accepting; finish in-flight requests and flush their answers (at most ``timeout`` seconds)."""
        loop = asyncio.get_running_loop()
        self.closing = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        deadline = loop.time() + timeout
        while any(conn.busy or not conn.queue.empty() for conn in self.connections) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.queue.put_nowait(None)  # the worker closes the transport, which flushes what it holds
        for conn in list(self.lingering):
            conn.transport.close()
        while self.connections and loop.time() < deadline:  # connection_lost: everything was written
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.transport.abort()
