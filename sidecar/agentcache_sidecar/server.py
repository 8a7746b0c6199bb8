"""The HTTP/1.1 server of the cache API on the Unix socket: asyncio + httptools.

aiohttp's server costs about twice a Valkey round trip per request, which is
most of the sidecar's latency; this protocol parses requests with httptools
(llhttp) and calls the same handlers ``app.py`` defines, with a small request
object that offers what they read (method, raw path, query, headers, body)
and the ``Response`` objects they return turned into bytes.

Invariants: requests on one connection are answered in order, one at a time;
a body is read whole before its handler runs and is refused with 413 as soon
as it passes ``max_body`` bytes; request lines and headers are bounded (414,
431); a request the parser cannot read gets a JSON 400 and the connection is
closed; ``close()`` stops accepting, lets in-flight requests finish (up to a
timeout) and then closes every connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import parse_qsl

import httptools
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from agentcache.protocol import (
    ERR_BAD_BODY,
    ERR_BAD_QUERY,
    ERR_BAD_REQUEST,
    ERR_HEADERS_TOO_LARGE,
    ERR_TOO_LARGE,
    ERR_URI_TOO_LONG,
    JSON_TYPE,
)

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

    __slots__ = ("method", "raw_path", "path", "query_string", "headers", "_body", "_query", "app")

    def __init__(self, method: str, raw_path: str, headers: CIMultiDictProxy, body: bytes, app: dict):
        self.method = method
        self.raw_path = raw_path
        self.path, _, self.query_string = raw_path.partition("?")
        self.headers = headers
        self._body = body
        self._query: MultiDictProxy | None = None
        self.app = app

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
    409: "Conflict",
    413: "Payload Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _encode(status: int, headers: Any, body: bytes, close: bool = False, head: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    lines.extend(
        f"{name}: {value}"
        for name, value in headers.items()
        if name not in ("Content-Length", "Transfer-Encoding", "Connection")
    )
    if status != 204:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data if head or status == 204 else data + body


class _Refused(Exception):
    """A request refused while it is being read (too large, malformed)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.answer = _json_error(status, code, message)


class HttpProtocol(asyncio.Protocol):
    transport: asyncio.Transport  # set by connection_made, which asyncio calls before anything else

    def __init__(self, server: CacheServer):
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.worker: asyncio.Task | None = None
        self.busy = False
        self._reset()

    def _reset(self) -> None:
        self._url: list[bytes] = []
        self._head_size = 0
        self._headers: CIMultiDict = CIMultiDict()
        self._body: list[bytes] = []
        self._body_size = 0

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream transport (uvloop's is not a subclass)
        self.server.connections.add(self)
        self.worker = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc) -> None:
        self.server.connections.discard(self)
        self.queue.put_nowait(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(_json_error(400, ERR_BAD_REQUEST, "protocol upgrades are not supported"))
        except httptools.HttpParserError as exc:  # a callback's exception arrives as the cause
            refused = exc.__cause__ or exc.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.answer)
            else:
                self._refuse(_json_error(400, ERR_BAD_REQUEST, f"malformed HTTP request: {exc}"))

    def _refuse(self, answer: bytes) -> None:
        """Answer after the requests already queued, then close."""
        self.transport.pause_reading()
        self.queue.put_nowait(answer)
        self.queue.put_nowait(None)

    # --- httptools callbacks ---------------------------------------------------------------------

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
        encoding = self._headers.get("Content-Encoding", "identity").lower()
        if encoding != "identity":
            raise _Refused(400, ERR_BAD_BODY, f"compressed request bodies ({encoding}) are not supported")
        declared = self._headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.server.max_body:
            raise _Refused(413, ERR_TOO_LARGE, f"request body of {declared} bytes exceeds {self.server.max_body} bytes")
        idle = not self.busy and self.queue.empty()  # an interim answer must not overtake queued ones
        if idle and self._headers.get("Expect", "").lower() == "100-continue":  # curl waits a second otherwise
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.server.max_body:
            raise _Refused(413, ERR_TOO_LARGE, f"request body exceeds {self.server.max_body} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("ascii")
        raw_path = b"".join(self._url).decode("ascii")  # llhttp refuses any other byte in a URL
        request = Request(method, raw_path, CIMultiDictProxy(self._headers), b"".join(self._body), self.server.app)
        self.queue.put_nowait((request, self.parser.should_keep_alive()))
        self._reset()

    # --- answering -------------------------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None:
                break
            if isinstance(item, bytes):
                self.transport.write(item)
                continue
            request, keep_alive = item
            self.busy = True
            try:
                response = await self.server.handle(request)
            finally:
                self.busy = False
            if self.transport.is_closing():
                break
            self.transport.write(
                _encode(
                    response.status,
                    response.headers,
                    response.body,
                    close=not keep_alive,
                    head=request.method == "HEAD",
                )
            )
            if not keep_alive or self.server.closing:
                break
        self.transport.close()


class CacheServer:
    """Serves ``route(method, path)``'s handlers on a Unix socket."""

    def __init__(self, route: Router, app: dict, max_body: int, max_line: int, max_head: int = 16384):
        self.route = route
        self.app = app
        self.max_body = max_body
        self.max_line = max_line
        self.max_head = max(max_head, max_line)
        self.connections: set[HttpProtocol] = set()
        self.closing = False
        self._server: asyncio.base_events.Server | None = None

    async def handle(self, request: Request) -> Response:
        return await self.route(request.method, request.path)(request)

    async def start(self, socket_path: str) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: HttpProtocol(self), socket_path)

    async def close(self, timeout: float) -> None:
        """Stop accepting; finish in-flight requests and flush their answers (at most ``timeout`` seconds)."""
        loop = asyncio.get_running_loop()
        self.closing = True
        if self._server is not None:
            self._server.close()
        deadline = loop.time() + timeout
        while any(conn.busy or not conn.queue.empty() for conn in self.connections) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.queue.put_nowait(None)  # the worker closes the transport, which flushes what it holds
        while self.connections and loop.time() < deadline:  # connection_lost: everything was written
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.transport.abort()
