"""Backend benchmark: the file backend against ``diskcache``, and the memory backend's RSS per entry.

    python bench/backends.py [--rounds 3] [--requests 2000] [--keys 1000000]

(a) The file backend's serial get/set (100 B and 100 KB values) against ``diskcache.Cache`` on the same
filesystem (one temporary directory), in the same run: ``FileBackend`` called in-process, and a file-backend
sidecar called through its socket with the SDK's ``AsyncCache``, both against diskcache in-process. Latency
p50 and ops/s of one caller, one operation at a time; each figure is the median of ``--rounds`` rounds (the
systems take turns within a round); ratios are against diskcache measured in the same round.

(b) The memory backend's resident memory with ``--keys`` entries of 100 B (keys as the sidecar stores them,
``prefix + "\\x1f" + key``), filled through its API in a subprocess (limits raised so it holds them all):
RSS before and after, bytes per entry, and the overhead against the raw bytes (key bytes + 100 per entry).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import diskcache

from agentcache import AsyncCache
from agentcache_sidecar.backends.base import Entry
from agentcache_sidecar.backends.file import FileBackend
from agentcache_sidecar.config import parse_settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from sidecar import start_sidecar  # noqa: E402

SIZES = {"100B": 100, "100KB": 100 * 1024}
KEYS = 200  # distinct keys per size, read and written in turn


def p50_and_rate(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), len(samples) / sum(samples)


async def timed(operation, keys: list[str], n: int) -> list[float]:
    samples = []
    for i in range(n):
        key = keys[i % len(keys)]
        started = time.perf_counter()
        await operation(key)
        samples.append(time.perf_counter() - started)
    return samples


def timed_sync(operation, keys: list[str], n: int) -> list[float]:
    samples = []
    for i in range(n):
        key = keys[i % len(keys)]
        started = time.perf_counter()
        operation(key)
        samples.append(time.perf_counter() - started)
    return samples


async def file_vs_diskcache(args, workdir: Path) -> dict:
    settings = parse_settings(
        {"cache": {"backend": "file", "storage_dir": str(workdir / "file"), "max_file_size": 1 << 20}}
    ).settings
    backend = FileBackend(settings.cache)
    await backend.start()
    disk = diskcache.Cache(str(workdir / "diskcache"))
    proc, sock = start_sidecar(
        workdir, "file", {"backend": "file", "storage_dir": str(workdir / "sidecar-file"), "max_file_size": 1 << 20}
    )
    sdk = AsyncCache(sock)
    results: dict[tuple, list[float]] = {}
    try:
        values = {name: os.urandom(size) for name, size in SIZES.items()}
        for name, value in values.items():
            keys = [f"{name}:{i}" for i in range(KEYS)]
            for key in keys:
                await backend.set(key, Entry(value))
                disk.set(key, value)
                await sdk.set(key, value, ttl=0)
        for _ in range(args.rounds):
            for name, value in values.items():
                keys = [f"{name}:{i}" for i in range(KEYS)]
                n = args.requests if name == "100B" else max(50, args.requests // 4)
                systems = {
                    "diskcache": (lambda k: disk.get(k), lambda k, v=value: disk.set(k, v)),
                    "file backend": (backend.get, lambda k, v=value: backend.set(k, Entry(v))),
                    "file sidecar (SDK)": (sdk.get, lambda k, v=value: sdk.set(k, v, ttl=0)),
                }
                for system, (get, put) in systems.items():
                    for op, call in (("get", get), ("set", put)):
                        if system == "diskcache":
                            samples = timed_sync(call, keys, n)
                        else:
                            samples = await timed(call, keys, n)
                        results.setdefault((name, op, system), []).append(p50_and_rate(samples))
    finally:
        await sdk.close()
        await backend.close()
        disk.close()
        proc.terminate()
        proc.wait(timeout=15)
    return results


def report_file(results: dict, args) -> None:
    print(
        f"\n(a) file backend vs diskcache {diskcache.__version__} on one filesystem: serial, one caller; "
        f"medians of {args.rounds} rounds"
    )
    header = f"{'value':6} {'op':4} {'system':30} {'p50 µs':>9} {'x diskcache':>12} {'ops/s':>9} {'x diskcache':>12}"
    print(header)
    print("-" * len(header))
    for name in SIZES:
        for op in ("get", "set"):
            base = results[(name, op, "diskcache")]
            base_p50 = statistics.median(r[0] for r in base)
            base_rate = statistics.median(r[1] for r in base)
            for system, label in (
                ("diskcache", "diskcache (in-process)"),
                ("file backend", "FileBackend (in-process)"),
                ("file sidecar (SDK)", "file sidecar via socket (SDK)"),
            ):
                runs = results[(name, op, system)]
                p50 = statistics.median(r[0] for r in runs)
                rate = statistics.median(r[1] for r in runs)
                print(
                    f"{name:6} {op:4} {label:30} {p50 * 1e6:9.0f} {p50 / base_p50:12.2f} {rate:9.0f} "
                    f"{rate / base_rate:12.2f}"
                )


RSS_SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, json, sys
    from agentcache_sidecar.backends.base import Entry
    from agentcache_sidecar.backends.memory import MemoryBackend

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    async def main(n):
        backend = MemoryBackend(max_items=n + 1, max_bytes=1 << 40)
        raw = 0
        gc.collect()
        before = rss()
        for i in range(n):
            key = "agentcache-local:\\x1f" + f"key:{i:08d}"
            value = i.to_bytes(4, "big") * 25  # 100 B, one object per entry as a request body is
            content_type = "".join(["application/", "octet-stream"])  # one string per request, as parsed
            await backend.set(key, Entry.create(value, content_type, 3600))
            raw += len(key.encode()) + len(value)
        gc.collect()
        after = rss()
        print(json.dumps({"before": before, "after": after, "raw": raw, "n": len(backend)}))

    asyncio.run(main(int(sys.argv[1])))
    """
)


def memory_rss(keys: int) -> dict:
    import json

    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(keys)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def report_rss(figures: dict) -> None:
    n = figures["n"]
    grown = figures["after"] - figures["before"]
    python = sys.version.split()[0]
    print(f"\n(b) memory backend, {n:,} entries of 100 B (filled through MemoryBackend.set, Python {python})")
    print(f"  RSS before {figures['before'] / 2**20:8.1f} MiB, after {figures['after'] / 2**20:8.1f} MiB")
    print(f"  raw bytes (key + value) {figures['raw'] / 2**20:8.1f} MiB = {figures['raw'] / n:.0f} B per entry")
    print(f"  RSS grown {grown / 2**20:8.1f} MiB = {grown / n:.0f} B per entry; overhead x{grown / figures['raw']:.2f}")


async def run(args) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="agentcache-bench-backends-"))
    results = await file_vs_diskcache(args, workdir)
    report_file(results, args)
    report_rss(memory_rss(args.keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
