"""The near cache: Valkey entries recently read by this sidecar, kept in its memory and dropped as soon
as Valkey says they changed (server-assisted client-side caching, ``CLIENT TRACKING`` in ``BCAST``
mode on the cache's key prefix).

``NearCache`` holds the entries; ``InvalidationListener`` keeps the one connection on which Valkey
sends the keys written, deleted, expired or evicted under the prefix (by any client), and the
``flush`` of a whole database.

Invariants:

- nothing is served unless the listener is subscribed and has heard from Valkey (a message or its
  own PING's answer) within ``stale_after`` seconds; a connection that breaks or falls silent
  empties the cache before anything is served from it again, and so does its re-subscription;
- an entry enters only through ``fill(key, ticket, entry)`` with the ticket ``begin(key)`` handed
  out before the read that produced it was sent; any invalidation of that key (or of everything)
  in between voids the ticket. So a value that Valkey replaced while it travelled back is never
  kept, whatever order the read's answer and the invalidation message arrive in;
- this sidecar's own writes and deletes call ``invalidate`` before they are sent and after they
  return, so it reads its own writes without waiting for Valkey's message;
- at most ``max_items`` entries and ``max_bytes`` bytes of keys and values (least recently read
  goes first); values over ``max_value_bytes`` are never kept; an entry is not served past its
  own expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from valkey.exceptions import ResponseError

from .base import Entry
from .memory import entry_size

log = logging.getLogger("agentcache.sidecar")

INVALIDATE_CHANNEL = b"__redis__:invalidate"
PING_INTERVAL = 0.5
"""Seconds between the listener's PINGs: how soon a silent connection is noticed."""
STALE_AFTER = 1.5
"""Seconds without a word from Valkey after which the near cache stops serving and empties."""
RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)


class NearCache:
    """Bounded LRU of ``Entry`` by full key, live only while Valkey's invalidations are heard."""

    def __init__(self, max_items: int, max_bytes: int, max_value_bytes: int, stale_after: float = STALE_AFTER):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.max_value_bytes = max_value_bytes
        self.stale_after = stale_after
        self._entries: OrderedDict[str, tuple[Entry, int]] = OrderedDict()
        self._pending: dict[str, int] = {}
        self._tickets = itertools.count(1)
        self.bytes = 0
        self.subscribed = False
        self.heard_at = float("-inf")
        self.hits = 0
        self.misses = 0
        self.invalidations = 0
        self.resets = 0
        self.now = time.monotonic

    @property
    def live(self) -> bool:
        return self.subscribed and self.now() - self.heard_at < self.stale_after

    def __len__(self) -> int:
        return len(self._entries)

    # --- reads ---------------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        """The kept entry of ``key`` (counted as a near hit or miss); None when not kept or not live."""
        if not self.live:
            if self._entries:
                self.reset()
            return None
        held = self._entries.get(key)
        if held is None or held[0].is_expired():
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return held[0]

    def begin(self, key: str) -> int | None:
        """A ticket for keeping what a read of ``key`` about to be sent returns (None: it will not be kept)."""
        if not self.live:
            return None
        ticket = next(self._tickets)
        self._pending[key] = ticket
        return ticket

    def fill(self, key: str, ticket: int | None, entry: Entry | None) -> None:
        """Keep ``entry`` read with ``ticket``, unless ``key`` was invalidated since ``begin``."""
        if ticket is None or self._pending.get(key) != ticket:
            return
        del self._pending[key]
        if entry is None or len(entry.value) > self.max_value_bytes or not self.live:
            return
        self._drop(key)
        size = entry_size(key, entry)
        self._entries[key] = (entry, size)
        self.bytes += size
        while len(self._entries) > self.max_items or self.bytes > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.bytes -= evicted

    def abandon(self, key: str, ticket: int | None) -> None:
        """The read of ``ticket`` failed: forget its ticket."""
        if ticket is not None and self._pending.get(key) == ticket:
            del self._pending[key]

    # --- invalidation --------------------------------------------------------------------------

    def _drop(self, key: str) -> None:
        held = self._entries.pop(key, None)
        if held is not None:
            self.bytes -= held[1]

    def invalidate(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._pending.pop(key, None)
            self._drop(key)

    def invalidate_all(self) -> None:
        self._pending.clear()
        self._entries.clear()
        self.bytes = 0

    def heard(self) -> None:
        self.heard_at = self.now()

    def reset(self) -> None:
        """Valkey can no longer be heard: empty, and serve nothing until subscribed again."""
        if self.subscribed or self._entries:
            self.resets += 1
        self.subscribed = False
        self.invalidate_all()

    def subscribed_now(self) -> None:
        """Tracking is on again: start empty (anything may have changed while it was off)."""
        self.invalidate_all()
        self.heard()
        self.subscribed = True

    def stats(self) -> dict[str, Any]:
        reads = self.hits + self.misses
        return {
            "live": self.live,
            "entries": len(self._entries),
            "bytes": self.bytes,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / reads, 4) if reads else 0.0,
            "invalidations": self.invalidations,
            "resets": self.resets,
        }


Connect = Callable[[], Awaitable[Any]]
"""Opens a connected valkey-py ``Connection`` of its own (not one of a pool's)."""


class InvalidationListener:
    """Keeps one connection subscribed to Valkey's invalidations of ``prefix`` and applies them to ``near``.

    The connection redirects its own tracking to itself (``CLIENT TRACKING ON REDIRECT <own id> BCAST
    PREFIX <prefix>``) and subscribes to ``__redis__:invalidate``, so it works with RESP2 and any
    Valkey (or Redis) from 6.0. A refused setup (an ACL without these commands, an old server) turns
    the near cache off for this run with one warning; a lost connection is retried with backoff.
    """

    def __init__(self, connect: Connect, prefix: bytes, near: NearCache, ping_interval: float = PING_INTERVAL):
        self._connect = connect
        self._prefix = prefix
        self.near = near
        self._ping_interval = ping_interval
        self._task: asyncio.Task | None = None
        self._established = False
        self.refused: str | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="near-cache-invalidations")

    async def close(self) -> None:
        if self._task is not None:
            await _cancel([self._task])
        self.near.reset()

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except _Refused as exc:
                self.refused = str(exc)
                log.warning("near cache off: Valkey refused client tracking (%s)", exc)
                return
            except Exception as exc:  # a broken or silent connection, whatever valkey-py raised
                if self._established:
                    log.warning("near cache emptied: lost Valkey's invalidations (%s); reconnecting", exc)
                    attempt = 0
            self._established = False
            await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            attempt += 1

    async def _listen(self) -> None:
        """Subscribe, then apply invalidations until the connection breaks or falls silent (raises)."""
        conn = await self._connect()
        tasks: list[asyncio.Task] = []
        try:
            client_id = await _ask(conn, "CLIENT", "ID")
            tracking = await _ask(
                conn, "CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX", self._prefix
            )
            if tracking not in (b"OK", "OK"):
                raise _Refused(f"CLIENT TRACKING answered {tracking!r}")
            reply = await _ask(conn, "SUBSCRIBE", INVALIDATE_CHANNEL)
            if not (isinstance(reply, list) and reply[:1] == [b"subscribe"]):
                raise _Refused(f"SUBSCRIBE {INVALIDATE_CHANNEL.decode()} answered {reply!r}")
            self.near.subscribed_now()
            self._established = True
            loop = asyncio.get_running_loop()
            tasks = [loop.create_task(self._read(conn)), loop.create_task(self._ping(conn))]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the reader's or the pinger's error
            raise ConnectionError("the invalidation connection ended")
        finally:
            self.near.reset()
            await _cancel(tasks)
            with contextlib.suppress(Exception):
                await conn.disconnect()

    async def _read(self, conn: Any) -> None:
        while True:
            message = await conn.read_response(timeout=None)
            self.near.heard()
            if isinstance(message, list) and len(message) == 3 and message[0] == b"message":
                keys = message[2]
                self.near.invalidations += 1
                if keys is None:  # FLUSHDB / FLUSHALL
                    self.near.invalidate_all()
                else:
                    self.near.invalidate(key.decode("utf-8", "surrogateescape") for key in keys)

    async def _ping(self, conn: Any) -> None:
        """PING (allowed while subscribed; the reader hears the ``pong``) so that a connection that
        falls silent is noticed: past ``stale_after`` without a word, this raises and the listener
        reconnects."""
        while True:
            await asyncio.sleep(self._ping_interval)
            if not self.near.live:
                raise TimeoutError(f"Valkey was silent for {self.near.stale_after} s")
            await conn.send_packed_command(conn.pack_command("PING"), check_health=False)


async def _cancel(tasks: list[asyncio.Task]) -> None:
    """Cancel ``tasks`` and wait for them to end. The cancellation is repeated until it takes: Python
    3.11's ``asyncio.wait_for`` (inside valkey-py's writes) swallows one that arrives as its inner
    future completes."""
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: an error of a cancelled listener is not news


class _Refused(Exception):
    """Valkey will not track for this client."""


async def _ask(conn: Any, *command: Any) -> Any:
    """One command's answer; an error answer (no permission, unknown command) is a ``_Refused``."""
    await conn.send_command(*command)
    try:
        return await conn.read_response(timeout=STALE_AFTER)
    except ResponseError as exc:
        raise _Refused(f"{' '.join(str(part) for part in command[:2])}: {exc}") from None
