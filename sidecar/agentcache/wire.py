"""Lean HTTP/1.1 connections to the sidecar's Unix socket, for the SDK's hot path.

A general HTTP client (aiohttp, http.client) spends more time per call than
the sidecar itself; the SDK talks to one known server, so it writes requests
directly and parses answers with httptools (llhttp, the parser of Node.js).

Invariants: one request in flight per connection; a connection goes back to
the pool only after a complete answer that allows keep-alive; a connection
that fails before any byte of an answer arrived is retried once on a fresh
connection when it was a reused one (the sidecar may close idle connections),
within the same deadline: a timed-out exchange is never retried.
An answer to HEAD ends with its headers (aiohttp sends no Content-Length for
it), so the reader completes it there and starts a fresh parser.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

if TYPE_CHECKING:  # asyncio is imported where an event loop uses it: a synchronous agent never loads it
    import asyncio

MAX_CONNECTIONS = 64
RECV_SIZE = 256 * 1024


class Answer:
    """A parsed answer: ``status``, case-insensitive ``headers``, ``body``."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: CIMultiDictProxy, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body


class ConnectionFailed(Exception):
    """The exchange failed; ``answered`` tells whether any byte of an answer had arrived, ``timed_out``
    whether the deadline passed."""

    def __init__(self, message: str, answered: bool, timed_out: bool = False):
        super().__init__(message)
        self.answered = answered
        self.timed_out = timed_out


def encode_request(
    method: str, path: str, body: bytes | None, content_type: str | None, accept: str | None = None
) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: agentcache"]
    if accept:
        head.append(f"Accept: {accept}")
    if body is not None:
        head.append(f"Content-Length: {len(body)}")
    elif method in ("PUT", "POST"):
        head.append("Content-Length: 0")
    if content_type:
        head.append(f"Content-Type: {content_type}")
    data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
    return data + body if body else data


class _AnswerReader:
    """httptools callbacks collecting one answer at a time."""

    def __init__(self, on_complete: Callable[[Answer], None]):
        self.parser = httptools.HttpResponseParser(self)
        self.on_complete = on_complete
        self.started = False
        self.expect_head = False
        self._done_at_headers = False
        self._reset()

    def begin(self, head: bool) -> None:
        """Before each exchange: is the answer to a HEAD (no body, whatever Content-Length says)?"""
        self.expect_head = head
        self._done_at_headers = False

    def _reset(self) -> None:
        self._headers: CIMultiDict = CIMultiDict()
        self._body: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self.started = True
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_headers_complete(self) -> None:
        if self.expect_head:  # llhttp would read a length-less body to EOF; HTTP/1.1 keeps alive unless told
            self._keep_alive = self._headers.get("Connection", "").lower() != "close"
            self._finish(self.parser.get_status_code())
            self._done_at_headers = True  # the old parser may still report this message complete
            self.parser = httptools.HttpResponseParser(self)

    def on_message_complete(self) -> None:
        if self._done_at_headers:
            return
        self._keep_alive = self.parser.should_keep_alive()
        self._finish(self.parser.get_status_code())

    def _finish(self, status: int) -> None:
        answer = Answer(status, CIMultiDictProxy(self._headers), b"".join(self._body))
        self._reset()
        self.started = False
        self.expect_head = False
        self.on_complete(answer)

    def keep_alive(self) -> bool:
        return self._keep_alive


class _Protocol:  # an asyncio protocol (no base class, so that defining it needs no asyncio)
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = _AnswerReader(self._complete)
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionFailed(f"unreadable answer from the sidecar: {exc}", True))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionFailed(str(exc) if exc else "the sidecar closed the connection", self.reader.started))

    def eof_received(self) -> None:
        """The sidecar ended its side: the transport closes, and ``connection_lost`` follows."""

    def pause_writing(self) -> None:
        """Requests are small and answered one at a time: nothing to hold back."""

    def resume_writing(self) -> None:
        pass

    def _complete(self, answer: Answer) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(answer)

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def exchange(self, request: bytes, head: bool) -> Answer:
        assert self.transport is not None, "connection_made runs before any exchange"
        import asyncio

        self.reader.begin(head)
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await self.waiter
        finally:
            self.waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class AsyncPool:
    """Keep-alive connections for one event loop; at most ``MAX_CONNECTIONS`` in use at once."""

    def __init__(self, socket_path: str, timeout: float, loop: asyncio.AbstractEventLoop):
        self.socket_path = socket_path
        self.timeout = timeout
        self.loop = loop
        import asyncio

        self._idle: list[_Protocol] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._deadline = asyncio.timeout

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        content_type: str | None,
        timeout: float | None = None,
        accept: str | None = None,
    ) -> Answer:
        """One exchange within ``timeout`` (default: the pool's), waiting for a free slot included."""
        data = encode_request(method, path, body, content_type, accept)
        async with self._deadline(timeout or self.timeout), self._slots:
            while self._idle:
                conn = self._idle.pop()
                if conn.closed:
                    continue
                try:
                    return await self._exchange(conn, data, method == "HEAD")
                except ConnectionFailed as exc:
                    if exc.answered:
                        raise
            conn = await self._connect()
            return await self._exchange(conn, data, method == "HEAD")

    async def _connect(self) -> _Protocol:
        try:
            _, protocol = await self.loop.create_unix_connection(_Protocol, self.socket_path)  # type: ignore[type-var]
        except OSError as exc:
            raise ConnectionFailed(exc.strerror or str(exc), False) from None
        return protocol

    async def _exchange(self, conn: _Protocol, data: bytes, head: bool) -> Answer:
        try:
            answer = await conn.exchange(data, head)
        except BaseException:
            conn.close()
            raise
        if conn.reader.keep_alive() and not conn.closed:
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    def close(self) -> None:
        """Close every idle connection (needs no running loop)."""
        for conn in self._idle:
            conn.close()
        self._idle.clear()


class SyncConnection:
    """One blocking keep-alive connection (the sync ``Cache`` keeps one per thread and process)."""

    def __init__(self, socket_path: str, timeout: float):
        self.socket_path = socket_path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.pid = os.getpid()
        self._answer: Answer | None = None
        self._reader: _AnswerReader | None = None

    def _complete(self, answer: Answer) -> None:
        self._answer = answer

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        content_type: str | None,
        timeout: float | None = None,
        accept: str | None = None,
    ) -> Answer:
        """One exchange; ``timeout`` (default: the connection's) bounds each wait for the sidecar."""
        data = encode_request(method, path, body, content_type, accept)
        reused = self.sock is not None
        head = method == "HEAD"
        timeout = timeout or self.timeout
        try:
            return self._exchange(data, head, timeout)
        except ConnectionFailed as exc:
            self.close()
            if not reused or exc.answered or exc.timed_out:
                raise
        return self._exchange(data, head, timeout)

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise ConnectionFailed(exc.strerror or str(exc), False) from None
        return sock

    def _exchange(self, data: bytes, head: bool, timeout: float) -> Answer:
        if self.sock is None or self._reader is None:
            self.sock, self._reader = self._open(), _AnswerReader(self._complete)
        sock, reader = self.sock, self._reader
        sock.settimeout(timeout)
        self._answer = None
        reader.begin(head)
        try:
            sock.sendall(data)
            while self._answer is None:
                chunk = sock.recv(RECV_SIZE)
                if not chunk:
                    raise ConnectionFailed("the sidecar closed the connection", reader.started)
                reader.feed(chunk)
        except (OSError, httptools.HttpParserError) as exc:
            answered = reader.started
            self.close()
            raise ConnectionFailed(str(exc) or type(exc).__name__, answered, isinstance(exc, TimeoutError)) from None
        except ConnectionFailed:
            self.close()
            raise
        if not reader.keep_alive():
            self.close()
        return self._answer

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self._reader = None
