"""File backend: one file per key under ``cache.storage_dir``, shareable by several processes.

Layout::

    <storage_dir>/entries/<h[:2]>/<h>     h = sha256(full key, UTF-8) in hex
    <storage_dir>/locks/<h[:2]>/<h>       a held lock (JSON: key, token, expires_at)
    <storage_dir>/locks/<h[:2]>/.guard    flock(2) guard serialising that directory's lock changes

An entry file is ``HEADER | key | record`` where ``record`` is
``record.encode(entry)`` and ``HEADER`` is ``>4sqIQI``: magic ``b"ACF1"``,
expires_at in epoch milliseconds (-1: never; a copy of the record's, so sweeps
and scans read only the head of each file), key length, record length, and the
CRC-32 of key + record. The stored key makes scans possible and turns a hash
collision into a miss instead of a wrong value.

Invariants:

- A reader never sees a half-written entry: writes go to a temp file in the
  same directory, which then replaces the entry with ``os.replace`` (last
  writer wins). There is no fsync: a power cut may lose recent writes, and the
  CRC turns whatever a crash leaves behind into a miss, never a wrong value.
- A file that fails its checks (length, CRC, key hash, record) is a miss and is
  removed by the read that finds it or by the sweep (eviction reason
  ``corrupt``); an expired entry likewise (``expired``). Removal renames the
  file aside and checks it is still the file that was judged, so a value that
  another process wrote in the meantime is never lost.
- ``max_file_size`` and ``size_limit`` bound the whole file (header, key and
  record after compression); a larger value raises ``ValueTooLarge``.
- Total bytes (file lengths, like diskcache) stay under ``size_limit``, also
  when several sidecars share the directory: the total lives in
  ``<storage_dir>/usage`` (8 bytes, changed under ``flock`` by every process);
  when a set pushes it over the limit, least recently used files (by mtime;
  every read touches the file) are removed until the total is at most 90% of
  the limit (reason ``size``). It is recounted at ``start()`` and by each sweep.
- A write the disk refuses (full, quota, read-only, file too large) raises
  ``WriteRefused``: that write is dropped, reads go on; ``ping`` asks only
  whether entries can be read.
- Locks are cross-process: every lock change happens under ``flock`` on the
  guard file of the lock's directory; a lock past its expiry is free to take,
  and release succeeds only for the holder's token.
- Blocking file I/O runs in a small thread pool, never on the event loop;
  eviction listeners are called on the event loop.
- Every ``OSError`` surfaces as ``BackendError`` naming the action, the path and
  the reason (disk full, permission denied, read-only file system, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import stat
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from agentcache.protocol import is_literal

from ..config import CacheSettings
from . import record
from .base import Backend, BackendError, Entry, ValueTooLarge, WriteRefused
from .glob import compile_glob

log = logging.getLogger("agentcache.sidecar.file")

MAGIC = b"ACF1"
HEADER = struct.Struct(">4sqIQI")
HEAD_READ = 4096
"""Bytes read first when only the header and key are needed (longer keys cost a second read)."""
TEMP_MAX_AGE = 60.0
"""Seconds after which a sweep removes a leftover temp file (a writer that died mid-write)."""
EVICT_TO = 0.9
"""After an eviction pass the total is at most this fraction of ``size_limit``."""
FILE_MODE = 0o660
DIR_MODE = 0o770
_DIGEST_LEN = 64
_OPEN_READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW

_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a component of the path is not a directory",
    errno.EEXIST: "a file is in the way of a directory",
    errno.EIO: "I/O error",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files in the system",
    errno.EFBIG: "file too large for the file system",
}

T = TypeVar("T")
Evictions = Counter  # reason -> count, gathered in worker threads and reported on the event loop


_WRITE_REFUSALS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM})
_WRITES = ("write", "create", "open the lock guard")


def disk_error(action: str, path: str, exc: OSError) -> BackendError:
    """A ``BackendError`` that says what failed, where, and why (``WriteRefused`` when the disk refused a write)."""
    reason = _REASONS.get(exc.errno or 0, exc.strerror or str(exc))
    code = errno.errorcode.get(exc.errno, "?") if exc.errno else "?"
    kind = WriteRefused if exc.errno in _WRITE_REFUSALS and action.startswith(_WRITES) else BackendError
    return kind(f"file backend: cannot {action} {path}: {reason} ({code})")


class SharedTotal:
    """A byte count every process using ``path`` shares: 8 bytes, read and changed under ``flock``.

    When the file cannot be made (a full or read-only disk at start) the count is this process's own.
    """

    def __init__(self, path: str):
        self.path = path
        self.value = 0
        self._lock = threading.Lock()

    def change(self, delta: int = 0, value: int | None = None) -> int:
        """Add ``delta`` (or set ``value``); return the total."""
        with self._lock:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
            except OSError:
                self.value = max(0, self.value + delta) if value is None else value
                return self.value
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                stored = os.pread(fd, 8, 0)
                current = struct.unpack(">q", stored)[0] if len(stored) == 8 else self.value
                self.value = max(0, current + delta) if value is None else value
                if delta or value is not None:
                    os.pwrite(fd, struct.pack(">q", self.value), 0)
            except OSError:
                self.value = max(0, self.value + delta) if value is None else value
            finally:
                os.close(fd)
            return self.value


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What makes a file 'the same one': a replacement or a touch changes it."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _temp_name(directory: str, base: str) -> str:
    return os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def encode_file(key: str, entry: Entry, compress_threshold: int | None) -> bytes:
    key_bytes = key.encode("utf-8")
    body = record.encode(entry, compress_threshold)
    expires_ms = -1 if entry.expires_at is None else int(entry.expires_at * 1000)
    crc = zlib.crc32(body, zlib.crc32(key_bytes))
    return b"".join((HEADER.pack(MAGIC, expires_ms, len(key_bytes), len(body), crc), key_bytes, body))


def _parse_header(head: bytes) -> tuple[int, int, int, int]:
    """(expires_ms, key_len, body_len, crc) of a file head; ``CorruptRecord`` when it is not ours."""
    if len(head) < HEADER.size:
        raise record.CorruptRecord("file shorter than its header")
    magic, expires_ms, key_len, body_len, crc = HEADER.unpack_from(head)
    if magic != MAGIC:
        raise record.CorruptRecord("bad magic")
    return expires_ms, key_len, body_len, crc


def decode_file(blob: bytes) -> tuple[str, Entry]:
    """(stored key, entry) of a whole entry file; ``CorruptRecord`` on any damage."""
    _, key_len, body_len, crc = _parse_header(blob)
    if len(blob) != HEADER.size + key_len + body_len:
        raise record.CorruptRecord(f"length {len(blob)} differs from the header's {HEADER.size + key_len + body_len}")
    key_end = HEADER.size + key_len
    key_bytes, body = blob[HEADER.size : key_end], blob[key_end:]
    if zlib.crc32(body, zlib.crc32(key_bytes)) != crc:
        raise record.CorruptRecord("checksum mismatch")
    try:
        key = key_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise record.CorruptRecord("key is not UTF-8") from exc
    return key, record.decode(body)


def _is_live(expires_ms: int, now: float) -> bool:
    return expires_ms < 0 or expires_ms / 1000.0 > now


def _read_exactly(fd: int, size: int) -> bytes:
    parts, remaining = [], size
    while remaining > 0:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _read_head(fd: int, file_size: int, digest: str) -> tuple[str, int]:
    """(key, expires_ms) from an open entry file, validated against its length and name."""
    head = os.read(fd, HEAD_READ)
    expires_ms, key_len, body_len, _ = _parse_header(head)
    if file_size != HEADER.size + key_len + body_len:
        raise record.CorruptRecord("file length differs from its header")
    if len(head) < HEADER.size + key_len:
        head += _read_exactly(fd, HEADER.size + key_len - len(head))
    try:
        key = head[HEADER.size : HEADER.size + key_len].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise record.CorruptRecord("key is not UTF-8") from exc
    if _digest(key) != digest:
        raise record.CorruptRecord("file name is not the hash of the stored key")
    return key, expires_ms


class FileBackend(Backend):
    name = "file"

    def __init__(self, cache: CacheSettings, max_workers: int = 8):
        super().__init__()
        self.root = os.path.abspath(cache.storage_dir)
        self.entries_dir = os.path.join(self.root, "entries")
        self.locks_dir = os.path.join(self.root, "locks")
        self.max_file_size = cache.max_file_size
        self.size_limit = cache.size_limit
        self.cleanup_interval = cache.cleanup_interval
        self.compress_threshold = cache.compression_threshold if cache.compression else None
        self._max_workers = max_workers
        self._executor: ThreadPoolExecutor | None = None
        self._total = SharedTotal(os.path.join(self.root, "usage"))
        self._evicting = threading.Lock()

    # ----------------------------------------------------------- plumbing

    async def _run(self, func: Callable[..., T], *args) -> T:
        """Run ``func(evictions, *args)`` in the pool; report its evictions on the loop."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._max_workers, thread_name_prefix="agentcache-file")
        evictions: Evictions = Counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, func, evictions, *args)
        except OSError as exc:
            raise disk_error("use", self.root, exc) from None
        finally:
            for reason, count in evictions.items():
                self._evicted(reason, count)

    def _entry_path(self, digest: str) -> tuple[str, str]:
        directory = os.path.join(self.entries_dir, digest[:2])
        return directory, os.path.join(directory, digest)

    @property
    def _total_bytes(self) -> int:
        """The shared total as this process last saw it."""
        return self._total.value

    def _add_bytes(self, delta: int) -> None:
        self._total.change(delta)

    def _set_total(self, total: int) -> None:
        self._total.change(value=total)

    def _remove_if_unchanged(self, path: str, identity: tuple) -> int | None:
        """Remove ``path`` if it is still the file described by ``identity``; return its size or None.

        The file is renamed aside first; if what was taken is a newer file (another
        writer replaced it, or a reader touched it), it is put back unless an even
        newer one has appeared meanwhile.
        """
        tomb = _temp_name(os.path.dirname(path), os.path.basename(path))
        try:
            os.rename(path, tomb)
        except FileNotFoundError:
            return None
        try:
            taken = os.lstat(tomb)
            if _identity(taken) == identity:
                return taken.st_size
            with contextlib.suppress(FileExistsError):
                os.link(tomb, path)
            return None
        finally:
            os.unlink(tomb)

    def _discard(self, evictions: Evictions, path: str, st: os.stat_result, reason: str) -> None:
        try:
            removed = self._remove_if_unchanged(path, _identity(st))
        except OSError as exc:
            log.warning("file backend: could not remove %s entry: %s", reason, disk_error("remove", path, exc))
            return
        if removed is not None:
            self._add_bytes(-removed)
            evictions[reason] += 1

    # ----------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Create the directories, count what is there, start the sweep; log (not raise) a disk problem."""
        try:
            await self._run(self._sweep_sync)
        except BackendError as exc:
            log.error("%s; the file backend is not ready", exc)
        self._start_sweeping(self.cleanup_interval, self.sweep)

    async def close(self) -> None:
        await self._stop_sweeping()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    async def sweep(self) -> None:
        """Remove expired and corrupt entries, expired locks and stale temp files; recount; enforce size_limit."""
        await self._run(self._sweep_sync)

    async def ping(self) -> bool:
        """True when the entries directory can be listed (reads can be served; a full disk refuses writes only)."""
        try:
            await self._run(self._fanout_dirs, self.entries_dir)
            await self._run(lambda evictions: os.listdir(self.entries_dir))
        except (BackendError, OSError) as exc:
            log.warning("%s", exc)
            return False
        return True

    # ----------------------------------------------------------- reads

    async def get(self, key: str) -> Entry | None:
        return await self._run(self._get_sync, key)

    async def get_many(self, keys: list[str]) -> list[Entry | None]:
        return await self._run(self._get_many_sync, keys)

    def _get_many_sync(self, evictions: Evictions, keys: list[str]) -> list[Entry | None]:
        return [self._get_sync(evictions, key) for key in keys]

    def _get_sync(self, evictions: Evictions, key: str) -> Entry | None:
        digest = _digest(key)
        _, path = self._entry_path(digest)
        try:
            fd = os.open(path, _OPEN_READ)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise disk_error("read", path, exc) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            blob = _read_exactly(fd, st.st_size)
            try:
                stored_key, entry = decode_file(blob)
                if stored_key != key and _digest(stored_key) != digest:
                    raise record.CorruptRecord("file name is not the hash of the stored key")
            except record.CorruptRecord:
                self._discard(evictions, path, st, "corrupt")
                return None
            if stored_key != key:  # a hash collision: the file belongs to the other key
                return None
            if entry.is_expired():
                self._discard(evictions, path, st, "expired")
                return None
            with contextlib.suppress(OSError):  # best effort: a read-only disk still serves reads
                os.utime(fd, ns=(st.st_atime_ns, time.time_ns()))
            return entry
        except OSError as exc:
            raise disk_error("read", path, exc) from None
        finally:
            os.close(fd)

    # ----------------------------------------------------------- writes

    async def set(self, key: str, entry: Entry) -> None:
        await self._run(self._set_many_sync, [(key, entry)])

    async def set_many(self, items: Iterable[tuple[str, Entry]]) -> None:
        await self._run(self._set_many_sync, list(items))

    def _set_many_sync(self, evictions: Evictions, items: list[tuple[str, Entry]]) -> None:
        """Encode and check every item first, so a too-large one stores nothing."""
        blobs = [(key, encode_file(key, entry, self.compress_threshold)) for key, entry in items]
        for _, blob in blobs:
            for limit in (self.max_file_size, self.size_limit):
                if len(blob) > limit:
                    raise ValueTooLarge(len(blob), limit)
        for key, blob in blobs:
            self._write(key, blob)
        if self._total_bytes > self.size_limit:
            self._evict_lru(evictions)

    def _write(self, key: str, blob: bytes) -> None:
        digest = _digest(key)
        directory, path = self._entry_path(digest)
        temp = _temp_name(directory, digest)
        try:
            try:
                fd = os.open(temp, _OPEN_NEW, FILE_MODE)
            except FileNotFoundError:
                os.makedirs(directory, DIR_MODE, exist_ok=True)
                fd = os.open(temp, _OPEN_NEW, FILE_MODE)
        except OSError as exc:
            raise disk_error("create a file in", directory, exc) from None
        try:
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view) :]
                now = time.time_ns()
                os.utime(fd, ns=(now, now))
            finally:
                os.close(fd)
            try:
                previous = os.stat(path).st_size
            except FileNotFoundError:
                previous = 0
            os.replace(temp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise disk_error("write", path, exc) from None
        self._add_bytes(len(blob) - previous)

    async def delete(self, key: str) -> bool:
        return await self._run(self._delete_many_sync, [key]) == 1

    async def delete_many(self, keys: list[str]) -> int:
        return await self._run(self._delete_many_sync, keys)

    def _delete_many_sync(self, evictions: Evictions, keys: list[str]) -> int:
        """Remove each key's file; count only those that held a live entry of that key."""
        deleted = 0
        for key in keys:
            digest = _digest(key)
            _, path = self._entry_path(digest)
            try:
                fd = os.open(path, _OPEN_READ)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise disk_error("read", path, exc) from None
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    continue
                try:
                    stored_key, expires_ms = _read_head(fd, st.st_size, digest)
                except record.CorruptRecord:
                    self._discard(evictions, path, st, "corrupt")
                    continue
                if stored_key != key:
                    continue
                if not _is_live(expires_ms, time.time()):
                    self._discard(evictions, path, st, "expired")
                    continue
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise disk_error("delete", path, exc) from None
            finally:
                os.close(fd)
            self._add_bytes(-st.st_size)
            deleted += 1
        return deleted

    # ----------------------------------------------------------- scans

    async def scan(self, pattern: str, batch: int = 500) -> AsyncIterator[list[str]]:
        """Walk one fan-out directory per worker call; yield live keys matching ``pattern`` in batches."""
        if is_literal(pattern):
            if (await self._run(self._get_sync, pattern)) is not None:
                yield [pattern]
            return
        matches = compile_glob(pattern)
        pending: list[str] = []
        for directory in await self._run(self._fanout_dirs, self.entries_dir):
            pending.extend(await self._run(self._scan_dir, directory, matches))
            while len(pending) >= batch:
                yield pending[:batch]
                pending = pending[batch:]
        if pending:
            yield pending

    def _fanout_dirs(self, evictions: Evictions, base: str) -> list[str]:
        try:
            with os.scandir(base) as found:
                return sorted(e.path for e in found if len(e.name) == 2 and e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise disk_error("list", base, exc) from None

    def _entry_files(self, directory: str) -> Iterator[os.DirEntry]:
        try:
            with os.scandir(directory) as found:
                yield from found
        except FileNotFoundError:
            return
        except OSError as exc:
            raise disk_error("list", directory, exc) from None

    def _scan_dir(self, evictions: Evictions, directory: str, matches: Callable[[str], bool]) -> list[str]:
        now = time.time()
        keys = []
        for item in self._entry_files(directory):
            if len(item.name) != _DIGEST_LEN or not item.is_file(follow_symlinks=False):
                continue
            try:
                fd = os.open(item.path, _OPEN_READ)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise disk_error("read", item.path, exc) from None
            try:
                key, expires_ms = _read_head(fd, os.fstat(fd).st_size, item.name)
            except record.CorruptRecord:
                continue
            finally:
                os.close(fd)
            if _is_live(expires_ms, now) and matches(key):
                keys.append(key)
        return keys

    # ----------------------------------------------------------- size and sweeps

    async def memory_usage(self) -> int:
        """Total length of the entry files of every sidecar sharing the directory."""
        return await self._run(lambda evictions: self._total.change())

    def _sweep_sync(self, evictions: Evictions) -> None:
        for directory in (self.entries_dir, self.locks_dir):
            try:
                os.makedirs(directory, DIR_MODE, exist_ok=True)
            except OSError as exc:
                raise disk_error("create the directory", directory, exc) from None
        now = time.time()
        kept: list[tuple[int, str, tuple]] = []
        for directory in self._fanout_dirs(evictions, self.entries_dir):
            for item in self._entry_files(directory):
                if _is_temp(item.name):
                    self._remove_stale_temp(item, now)
                elif len(item.name) == _DIGEST_LEN and item.is_file(follow_symlinks=False):
                    survivor = self._sweep_entry(evictions, item, now)
                    if survivor is not None:
                        kept.append(survivor)
        self._set_total(sum(identity[2] for _, _, identity in kept))
        if self._total_bytes > self.size_limit:
            self._evict_lru(evictions, kept)
        self._sweep_locks(evictions, now)

    def _remove_stale_temp(self, item: os.DirEntry, now: float) -> None:
        with contextlib.suppress(FileNotFoundError):
            if item.stat(follow_symlinks=False).st_mtime < now - TEMP_MAX_AGE:
                os.unlink(item.path)

    def _sweep_entry(self, evictions: Evictions, item: os.DirEntry, now: float) -> tuple[int, str, tuple] | None:
        """Judge one entry file; return (mtime_ns, path, identity) when it stays.

        A file this process may not read (another user's) is kept and counted, not judged.
        """
        try:
            fd = os.open(item.path, _OPEN_READ)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("%s; the sweep leaves it alone", disk_error("read", item.path, exc))
            try:
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                return None
            return st.st_mtime_ns, item.path, _identity(st)
        try:
            st = os.fstat(fd)
            try:
                _, expires_ms = _read_head(fd, st.st_size, item.name)
            except record.CorruptRecord:
                self._discard(evictions, item.path, st, "corrupt")
                return None
            if not _is_live(expires_ms, now):
                self._discard(evictions, item.path, st, "expired")
                return None
            return st.st_mtime_ns, item.path, _identity(st)
        finally:
            os.close(fd)

    def _evict_lru(self, evictions: Evictions, candidates: list[tuple[int, str, tuple]] | None = None) -> None:
        """Remove least recently used entry files until the total is at most EVICT_TO * size_limit.

        One pass at a time per process: a thread that finds a pass running leaves the work to it.
        """
        if not self._evicting.acquire(blocking=False):
            return
        try:
            self._evict_pass(evictions, candidates)
        finally:
            self._evicting.release()

    def _evict_pass(self, evictions: Evictions, candidates: list[tuple[int, str, tuple]] | None) -> None:
        if candidates is None:
            candidates = []
            for directory in self._fanout_dirs(evictions, self.entries_dir):
                for item in self._entry_files(directory):
                    if len(item.name) == _DIGEST_LEN and item.is_file(follow_symlinks=False):
                        with contextlib.suppress(FileNotFoundError):
                            st = item.stat(follow_symlinks=False)
                            candidates.append((st.st_mtime_ns, item.path, _identity(st)))
            self._set_total(sum(identity[2] for _, _, identity in candidates))
        target = int(self.size_limit * EVICT_TO)
        for _, path, identity in sorted(candidates):
            if self._total_bytes <= target:
                break
            try:
                removed = self._remove_if_unchanged(path, identity)
            except OSError as exc:
                raise disk_error("evict", path, exc) from None
            if removed is not None:
                self._add_bytes(-removed)
                evictions["size"] += 1

    # ----------------------------------------------------------- locks

    def _lock_path(self, key: str) -> tuple[str, str]:
        digest = _digest(key)
        directory = os.path.join(self.locks_dir, digest[:2])
        return directory, os.path.join(directory, digest)

    @contextlib.contextmanager
    def _guard(self, directory: str) -> Iterator[None]:
        """Exclusive flock on the directory's guard file: serialises lock changes across processes and threads."""
        guard = os.path.join(directory, ".guard")
        try:
            os.makedirs(directory, DIR_MODE, exist_ok=True)
            fd = os.open(guard, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
        except OSError as exc:
            raise disk_error("open the lock guard", guard, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _read_lock(path: str) -> tuple[str, float] | None:
        """(token, expires_at) of the lock file, None when absent or unreadable (i.e. free)."""
        try:
            with open(path, "rb") as handle:
                held = json.loads(handle.read())
            return str(held["token"]), float(held["expires_at"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return None

    async def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        return await self._run(self._acquire_lock_sync, key, token, ttl)

    def _acquire_lock_sync(self, evictions: Evictions, key: str, token: str, ttl: float) -> bool:
        directory, path = self._lock_path(key)
        with self._guard(directory):
            now = time.time()
            held = self._read_lock(path)
            if held is not None and held[1] > now:
                return False
            temp = _temp_name(directory, os.path.basename(path))
            content = json.dumps({"key": key, "token": token, "expires_at": now + ttl}).encode("utf-8")
            try:
                with open(os.open(temp, _OPEN_NEW, FILE_MODE), "wb") as handle:
                    handle.write(content)
                os.replace(temp, path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise disk_error("write the lock", path, exc) from None
            return True

    async def release_lock(self, key: str, token: str) -> bool:
        return await self._run(self._release_lock_sync, key, token)

    def _release_lock_sync(self, evictions: Evictions, key: str, token: str) -> bool:
        directory, path = self._lock_path(key)
        with self._guard(directory):
            held = self._read_lock(path)
            if held is None:
                return False
            mine = held[0] == token and held[1] > time.time()
            if mine or held[1] <= time.time():
                try:
                    os.unlink(path)
                except OSError as exc:
                    raise disk_error("remove the lock", path, exc) from None
            return mine

    def _sweep_locks(self, evictions: Evictions, now: float) -> None:
        for directory in self._fanout_dirs(evictions, self.locks_dir):
            items = list(self._entry_files(directory))
            for item in items:
                if _is_temp(item.name):
                    self._remove_stale_temp(item, now)
            lock_files = [item.path for item in items if len(item.name) == _DIGEST_LEN]
            if not lock_files:
                continue
            with self._guard(directory):
                for path in lock_files:
                    held = self._read_lock(path)
                    if held is not None and held[1] <= now:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(path)
