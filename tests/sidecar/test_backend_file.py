"""File backend specifics: on-disk layout, atomicity, corruption, expiry, size bounds, disk errors, two processes."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from agentcache_sidecar.backends import file as file_module
from agentcache_sidecar.backends.base import BackendError, Entry, ValueTooLarge
from agentcache_sidecar.backends.file import FileBackend, decode_file, encode_file
from agentcache_sidecar.config import CacheSettings


def settings(directory: Path, **overrides) -> CacheSettings:
    return CacheSettings(**{"backend": "file", "storage_dir": str(directory), "cleanup_interval": 3600, **overrides})


def entry(value: bytes, ttl: float = 60, stale_ttl: float = 0) -> Entry:
    return Entry.create(value, "text/plain", ttl, stale_ttl)


def entry_path(directory: Path, key: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return directory / "entries" / digest[:2] / digest


def all_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def entry_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in (directory / "entries").rglob("*") if p.is_file())


class Backend:
    """A started FileBackend that records its evictions; closes on exit."""

    def __init__(self, directory: Path, **overrides):
        self.backend = FileBackend(settings(directory, **overrides))
        self.evictions: Counter = Counter()
        self.backend.add_eviction_listener(lambda reason, count: self.evictions.update({reason: count}))

    async def __aenter__(self) -> FileBackend:
        await self.backend.start()
        return self.backend

    async def __aexit__(self, *exc) -> None:
        await self.backend.close()


async def test_layout_one_file_per_key_with_the_key_inside(tmp_path):
    async with Backend(tmp_path) as backend:
        await backend.set("agentcache:user:1", entry(b"hello"))
        path = entry_path(tmp_path, "agentcache:user:1")
        assert path.is_file()
        key, stored = decode_file(path.read_bytes())
        assert key == "agentcache:user:1" and stored.value == b"hello"
        assert [p for p in all_files(tmp_path / "entries") if p.name.endswith(".tmp")] == []
        assert await backend.memory_usage() == path.stat().st_size == entry_bytes(tmp_path)


async def test_survives_restart(tmp_path):
    async with Backend(tmp_path) as first:
        await first.set("k:1", entry(b"one"))
        await first.set("k:2", entry(b"two", ttl=0))
    async with Backend(tmp_path) as second:
        assert (await second.get("k:1")).value == b"one"
        assert (await second.get("k:2")).value == b"two"
        assert await second.memory_usage() == entry_bytes(tmp_path)
        assert await second.key_count("k:*") == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
async def test_corrupt_file_is_a_miss_and_is_removed(tmp_path, damage):
    harness = Backend(tmp_path)
    async with harness as backend:
        await backend.set("k", entry(b"x" * 1000))
        path = entry_path(tmp_path, "k")
        blob = path.read_bytes()
        damaged = {
            "truncate": blob[: len(blob) // 2],
            "flip": blob[:-1] + bytes([blob[-1] ^ 1]),
            "garbage": os.urandom(len(blob)),
            "empty": b"",
        }[damage]
        path.write_bytes(damaged)
        assert await backend.get("k") is None
        assert not path.exists()
        assert harness.evictions == {"corrupt": 1}


async def test_sweep_removes_corrupt_expired_and_stale_temp_files(tmp_path):
    harness = Backend(tmp_path)
    async with harness as backend:
        await backend.set("corrupt", entry(b"v" * 100))
        await backend.set("expired", entry(b"v", ttl=0.05))
        await backend.set("live", entry(b"v"))
        corrupt = entry_path(tmp_path, "corrupt")
        corrupt.write_bytes(corrupt.read_bytes()[:-10])
        directory = entry_path(tmp_path, "live").parent
        old_temp, new_temp = directory / ".abc.1.dead.tmp", directory / ".abc.2.busy.tmp"
        old_temp.write_bytes(b"half")
        new_temp.write_bytes(b"half")
        an_hour_ago = time.time() - 3600
        os.utime(old_temp, (an_hour_ago, an_hour_ago))
        await asyncio.sleep(0.1)
        await backend.sweep()
        assert harness.evictions == {"corrupt": 1, "expired": 1}
        assert not corrupt.exists() and not entry_path(tmp_path, "expired").exists()
        assert not old_temp.exists() and new_temp.exists()
        assert (await backend.get("live")).value == b"v"
        assert await backend.memory_usage() == entry_path(tmp_path, "live").stat().st_size


async def test_periodic_sweep_runs_without_reads(tmp_path):
    harness = Backend(tmp_path, cleanup_interval=0.1)
    async with harness as backend:
        await backend.set("short", entry(b"v", ttl=0.05))
        path = entry_path(tmp_path, "short")
        deadline = time.monotonic() + 3
        while not harness.evictions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert harness.evictions == {"expired": 1}
        assert not path.exists()


async def test_expired_entry_is_removed_on_read(tmp_path):
    harness = Backend(tmp_path)
    async with harness as backend:
        await backend.set("k", entry(b"v", ttl=0.05))
        await asyncio.sleep(0.1)
        assert await backend.get("k") is None
        assert not entry_path(tmp_path, "k").exists()
        assert harness.evictions == {"expired": 1}
        assert await backend.memory_usage() == 0


async def test_stale_entry_survives_until_stale_ttl_and_is_still_listed(tmp_path):
    async with Backend(tmp_path) as backend:
        await backend.set("k", entry(b"v", ttl=0.05, stale_ttl=60))
        await asyncio.sleep(0.1)
        got = await backend.get("k")
        assert got.value == b"v" and not got.is_fresh()
        assert await backend.key_count("*") == 1


async def test_value_over_max_file_size_is_refused_and_old_value_kept(tmp_path):
    async with Backend(tmp_path, max_file_size=2000) as backend:
        await backend.set("k", entry(b"small"))
        with pytest.raises(ValueTooLarge) as raised:
            await backend.set("k", entry(b"x" * 2000))
        assert raised.value.limit == 2000 and raised.value.size > 2000
        assert (await backend.get("k")).value == b"small"
        with pytest.raises(ValueTooLarge):
            await backend.set_many([("a", entry(b"ok")), ("b", entry(b"x" * 5000))])
        assert await backend.get("a") is None, "a batch with a too-large value stores nothing"


async def test_compression_shrinks_files_and_max_file_size_counts_compressed_bytes(tmp_path):
    value = b"the same sentence again and again. " * 3000
    async with Backend(tmp_path, compression=True, compression_threshold=1024, max_file_size=20_000) as backend:
        await backend.set("k", entry(value))
        assert entry_path(tmp_path, "k").stat().st_size < len(value) / 10
        assert (await backend.get("k")).value == value


async def test_size_limit_evicts_least_recently_used(tmp_path):
    harness = Backend(tmp_path, size_limit=12_000)
    async with harness as backend:
        for i in range(10):
            await backend.set(f"k:{i}", entry(b"x" * 1000))
        assert harness.evictions == {}
        assert await backend.get("k:0") is not None  # touch: k:0 becomes the most recently used
        for i in range(10, 14):
            await backend.set(f"k:{i}", entry(b"x" * 1000))
        assert harness.evictions["size"] >= 3
        assert entry_bytes(tmp_path) <= 12_000
        assert await backend.memory_usage() == entry_bytes(tmp_path)
        assert await backend.get("k:0") is not None, "recently read entry kept"
        assert await backend.get("k:1") is None, "least recently used entry evicted first"
        assert await backend.get("k:13") is not None, "newest entry kept"


async def test_size_limit_holds_across_sidecars_sharing_the_directory(tmp_path):
    """Two backends on one directory count one shared total: together they stay under size_limit."""
    async with Backend(tmp_path, size_limit=12_000) as first, Backend(tmp_path, size_limit=12_000) as second:
        for i in range(10):
            await first.set(f"a:{i}", entry(b"x" * 1000))
            await second.set(f"b:{i}", entry(b"x" * 1000))
        assert entry_bytes(tmp_path) <= 12_000
        assert await first.memory_usage() == await second.memory_usage() == entry_bytes(tmp_path)


async def test_value_larger_than_size_limit_is_refused(tmp_path):
    async with Backend(tmp_path, size_limit=5000) as backend:
        with pytest.raises(ValueTooLarge) as raised:
            await backend.set("k", entry(b"x" * 6000))
        assert raised.value.limit == 5000


async def test_hash_collision_is_a_miss_and_last_writer_wins(tmp_path, monkeypatch):
    """sha256 collisions cannot be found, so the file-name hash is weakened to the key's first
    character: "a1" and "a2" then share a file, as colliding keys would."""
    monkeypatch.setattr(file_module, "_digest", lambda key: hashlib.sha256(key[:1].encode()).hexdigest())
    async with Backend(tmp_path) as backend:
        await backend.set("a1", entry(b"one"))
        assert await backend.get("a2") is None
        assert await backend.delete("a2") is False
        assert (await backend.get("a1")).value == b"one"
        await backend.set("a2", entry(b"two"))
        assert await backend.get("a1") is None
        assert (await backend.get("a2")).value == b"two"
        assert await backend.key_count("a*") == 1


async def test_misplaced_file_is_corrupt(tmp_path):
    """A file whose stored key does not hash to its name (copied or renamed by hand) is never served."""
    harness = Backend(tmp_path)
    async with harness as backend:
        await backend.set("a", entry(b"for a"))
        path = entry_path(tmp_path, "a")
        path.write_bytes(encode_file("b", entry(b"for b"), None))
        assert await backend.key_count("*") == 0
        assert await backend.get("a") is None
        assert not path.exists()
        assert harness.evictions == {"corrupt": 1}


async def test_scan_and_clear_touch_only_entries(tmp_path):
    (tmp_path / "notes.txt").write_text("not the cache's")
    async with Backend(tmp_path) as backend:
        for i in range(20):
            await backend.set(f"p:{i}", entry(b"v"))
        await backend.acquire_lock("p:job", "t", 30)
        assert await backend.delete_pattern("*") == 20
        assert await backend.key_count("*") == 0
        assert await backend.memory_usage() == 0
        assert (tmp_path / "notes.txt").read_text() == "not the cache's"
        assert await backend.acquire_lock("p:job", "other", 30) is False, "clearing entries leaves locks alone"


async def test_lock_file_holds_token_and_expiry_and_sweep_removes_expired_locks(tmp_path):
    async with Backend(tmp_path) as backend:
        assert await backend.acquire_lock("job", "tok", 0.05)
        digest = hashlib.sha256(b"job").hexdigest()
        lock_file = tmp_path / "locks" / digest[:2] / digest
        held = json.loads(lock_file.read_text())
        assert held["token"] == "tok" and held["expires_at"] > time.time() - 1
        await asyncio.sleep(0.1)
        await backend.sweep()
        assert not lock_file.exists()


async def test_disk_full_is_a_backend_error_and_leaves_no_temp_file(tmp_path, monkeypatch):
    """A full disk cannot be produced here (no privileges to mount a tiny file system), so os.replace
    is made to fail with ENOSPC, as the kernel would."""
    async with Backend(tmp_path) as backend:
        await backend.set("k", entry(b"old"))

        def disk_full(src, dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(file_module.os, "replace", disk_full)
        with pytest.raises(BackendError, match="no space left on the device"):
            await backend.set("k", entry(b"new"))
        monkeypatch.undo()
        assert (await backend.get("k")).value == b"old"
        assert [p.name for p in all_files(tmp_path / "entries")] == [entry_path(tmp_path, "k").name]


async def test_storage_dir_that_is_a_file_gives_clear_errors(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("I am a file")
    backend = FileBackend(settings(blocker))
    await backend.start()  # logs, does not raise
    try:
        with pytest.raises(BackendError, match="not a directory"):
            await backend.set("k", entry(b"v"))
        with pytest.raises(BackendError, match="not a directory"):
            await backend.get("k")
        with pytest.raises(BackendError):
            await backend.acquire_lock("k", "t", 1)
        assert await backend.ping() is False
    finally:
        await backend.close()


READ_ONLY_CHECK = """
async def check(directory):
    backend = FileBackend(CacheSettings(backend="file", storage_dir=directory, cleanup_interval=3600))
    await backend.start()
    try:
        value = (await backend.get("readable")).value
        try:
            await backend.set("k", Entry.create(b"v", "text/plain", 60))
            write_error = None
        except BackendError as exc:
            write_error = f"{type(exc).__name__}: {exc}"
        return {"read": value.decode(), "write_error": write_error, "ping": await backend.ping()}
    finally:
        await backend.close()
"""


def _read_only_scenario(directory: str) -> dict:
    namespace = {
        "FileBackend": FileBackend,
        "CacheSettings": CacheSettings,
        "Entry": Entry,
        "BackendError": BackendError,
    }
    exec(READ_ONLY_CHECK, namespace)
    return asyncio.run(namespace["check"](directory))


def test_read_only_directory_still_serves_reads_and_refuses_writes_clearly():
    """A directory the sidecar may not write to. Root ignores permissions, so as root the check runs
    in a forked child that drops to uid/gid 65534 (nobody): a real EACCES from the kernel."""
    directory = tempfile.mkdtemp(prefix="agentcache-ro-")
    try:
        seed = FileBackend(settings(Path(directory)))
        asyncio.run(seed.set("readable", entry(b"still here")))
        for path in Path(directory).rglob("*"):
            path.chmod(0o555 if path.is_dir() else 0o444)
        os.chmod(directory, 0o555)
        if os.geteuid() != 0:
            result = _read_only_scenario(directory)
        else:
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # child: drop root, run, report, exit without pytest's cleanup
                try:
                    os.close(read_end)
                    os.setgroups([])
                    os.setgid(65534)
                    os.setuid(65534)
                    outcome = _read_only_scenario(directory)
                except BaseException as exc:  # reported to the parent, which fails the test with it
                    outcome = {"child_error": repr(exc)}
                try:
                    os.write(write_end, json.dumps(outcome).encode())
                finally:
                    os._exit(0)
            os.close(write_end)
            with os.fdopen(read_end, "rb") as pipe:
                report = pipe.read()
            os.waitpid(pid, 0)
            result = json.loads(report)
            assert "child_error" not in result, result
        assert result["read"] == "still here"
        assert result["write_error"].startswith("WriteRefused:") and "permission denied" in result["write_error"]
        assert directory in result["write_error"]
        assert result["ping"] is True, "reads are served: the backend is up, its writes are refused one by one"
    finally:
        for path in [Path(directory), *Path(directory).rglob("*")]:
            path.chmod(0o755)
        shutil.rmtree(directory)


async def test_slow_disk_does_not_block_the_event_loop(tmp_path, monkeypatch):
    """A slow disk cannot be produced here, so os.replace is slowed down; the loop must keep ticking."""
    real_replace = os.replace

    def slow_replace(src, dst):
        time.sleep(0.3)
        real_replace(src, dst)

    async with Backend(tmp_path) as backend:
        monkeypatch.setattr(file_module.os, "replace", slow_replace)
        ticks = 0

        async def heartbeat():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beating = asyncio.create_task(heartbeat())
        await backend.set("k", entry(b"v"))
        beating.cancel()
        monkeypatch.undo()
        assert ticks >= 10
        assert (await backend.get("k")).value == b"v"


WORKER = textwrap.dedent("""
    import asyncio, json, os, sys, time
    from agentcache_sidecar.backends.base import Entry
    from agentcache_sidecar.backends.file import FileBackend
    from agentcache_sidecar.config import CacheSettings

    directory, name, seconds, log_path = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]

    def value_for(seq, key_no):
        unit = f"{name}:{seq}:{key_no};".encode()
        return unit * (1 + (seq * 7 + key_no) % 300)

    def well_formed(blob):
        unit = blob[: blob.index(b";") + 1]
        return blob == unit * (len(blob) // len(unit))

    async def main():
        backend = FileBackend(CacheSettings(backend="file", storage_dir=directory, cleanup_interval=0.2,
                                            size_limit=40_000))
        await backend.start()
        stats = {"sets": 0, "hits": 0, "bad": 0, "locks": 0}
        log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        deadline, seq = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            seq += 1
            key_no = seq % 20
            await backend.set(f"shared:{key_no}", Entry.create(value_for(seq, key_no), "text/plain", 30))
            stats["sets"] += 1
            for got in await backend.get_many([f"shared:{n}" for n in range(0, 20, 3)]):
                if got is not None:
                    stats["hits"] += 1
                    stats["bad"] += not well_formed(got.value)
            token = f"{name}-{seq}"
            if await backend.acquire_lock("shared:job", token, 5):
                os.write(log, f"enter {token}\\n".encode())
                await asyncio.sleep(0.001)
                os.write(log, f"exit {token}\\n".encode())
                assert await backend.release_lock("shared:job", token)
                stats["locks"] += 1
        await backend.close()
        print(json.dumps(stats))

    asyncio.run(main())
""")


def test_two_processes_share_the_directory_safely(tmp_path):
    """Two real processes hammer the same keys and the same lock, with a size bound that makes both
    evict and sweep meanwhile: every read is a whole value written by one of them, and the lock is
    never held by both at once."""
    log_path = tmp_path / "lock.log"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / "cache"), name, "2.0", str(log_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("w1", "w2")
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err
        results.append(json.loads(out))
    for stats in results:
        assert stats["bad"] == 0
        assert stats["sets"] > 50 and stats["hits"] > 50 and stats["locks"] > 5
    lines = log_path.read_text().splitlines()
    assert len(lines) == 2 * sum(stats["locks"] for stats in results)
    for enter, leave in zip(lines[::2], lines[1::2]):
        assert enter.startswith("enter ") and leave == "exit " + enter.removeprefix("enter "), (enter, leave)
    assert {line.split()[1].split("-")[0] for line in lines} == {"w1", "w2"}


async def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    script = (
        "import asyncio, sys\n"
        "from agentcache_sidecar.backends.file import FileBackend\n"
        "from agentcache_sidecar.config import CacheSettings\n"
        "backend = FileBackend(CacheSettings(backend='file', storage_dir=sys.argv[1]))\n"
        "assert asyncio.run(backend.acquire_lock('job', 'dead', 0.5))\n"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(tmp_path))
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    async with Backend(tmp_path) as backend:
        assert await backend.acquire_lock("job", "mine", 5) is False
        assert await backend.release_lock("job", "mine") is False
        await asyncio.sleep(0.6)
        assert await backend.acquire_lock("job", "mine", 5) is True
        assert await backend.release_lock("job", "dead") is False
        assert await backend.release_lock("job", "mine") is True
