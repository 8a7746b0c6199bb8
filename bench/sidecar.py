"""Sidecar benchmark: GET latency and throughput against direct valkey-py, in one run.

Starts a valkey-server (Unix socket) and four sidecars (memory, valkey with its
near cache, valkey without, file) as separate processes, then measures, for 100 B
and 100 KB values:
  - serial GET latency p50/p99 (one client, one request at a time),
  - throughput with 1 and 32 concurrent clients,
for (a) valkey-py straight to valkey-server, (b) sidecar/memory, (c)
sidecar/valkey with its near cache (the default), (d) sidecar/valkey with
``near_cache.enabled: false``, (e) sidecar/file (b-e through the SDK's
``AsyncCache``, as an agent would call them), and prints each ratio to (a); plus
get_many of 1,000 keys against one MGET, and the near cache's invalidation
delay: from a write through (d) returning to (c) reading the new value; set_many of
1,000 keys against one pipeline of SETs. Each figure is the median of
``--rounds`` rounds, the systems measured in turn within each round, so that
machine noise hits them alike.

    python bench/sidecar.py [--rounds 5] [--requests 2000]
    taskset -c 0 python bench/sidecar.py   # every process on one CPU: the CPU cost of a request

On a virtual machine an idle vCPU that must wake for each request of a serial
client adds tens of microseconds at random; pinned to one CPU, the serial
figures measure what each system costs and vary far less (two runs in three agreed within 1%,
the third was 20% slower): compare the median of a few runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import valkey.asyncio as avalkey
import yaml
from _common import start_valkey  # bench/ is sys.path[0] when a benchmark runs as a script

from agentcache import AsyncCache

SIZES = {"100B": 100, "100KB": 100 * 1024}
CONCURRENCY = (1, 32)
MANY = 1000


def start_sidecar(workdir: Path, name: str, cache: dict, services: dict | None = None) -> tuple[subprocess.Popen, str]:
    """``valkey-far``: the valkey backend with its near cache off."""
    sock = str(workdir / f"sidecar-{name}.sock")
    config = {
        "cache": {"key_prefix": "bench:", "max_size": 100000, **cache},
        "sidecar": {
            "socket_path": sock,
            "metrics_port": 0,
            "log_level": "warning",
            "near_cache": {"enabled": name != "valkey-far"},
        },
    }
    if services:
        config["services"] = services
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "agentcache_sidecar.main", "--config", str(path)])
    deadline = time.monotonic() + 15
    while not os.path.exists(sock):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"sidecar {name} did not start")
        time.sleep(0.02)
    return proc, sock


class Direct:
    """(a) valkey-py asyncio straight to valkey-server over its Unix socket."""

    label = "a valkey-py direct"

    def __init__(self, sock: str):
        self.client = avalkey.Valkey(unix_socket_path=sock, max_connections=64)

    async def set(self, key: str, value: bytes) -> None:
        await self.client.set("bench:" + key, value)

    async def get(self, key: str) -> bytes:
        return await self.client.get("bench:" + key)

    async def get_many(self, keys: list[str]) -> list:
        return await self.client.mget(["bench:" + k for k in keys])

    async def set_many(self, items: dict[str, bytes]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key, value in items.items():
            pipe.set("bench:" + key, value)
        await pipe.execute()

    async def close(self) -> None:
        await self.client.aclose()


class Sidecar:
    """A sidecar through the agent SDK's ``AsyncCache`` (keep-alive connections over its Unix socket)."""

    def __init__(self, label: str, sock: str):
        self.label = label
        self.cache = AsyncCache(sock)

    async def set(self, key: str, value: bytes) -> None:
        assert await self.cache.set(key, value, ttl=0)

    async def get(self, key: str) -> bytes:
        value = await self.cache.get(key)
        assert value is not None
        return value

    async def get_many(self, keys: list[str]) -> dict:
        return await self.cache.get_many(keys)

    async def set_many(self, items: dict[str, bytes]) -> None:
        assert await self.cache.set_many(items, ttl=0)

    async def close(self) -> None:
        await self.cache.close()


async def serial_latency(target, key: str, n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await target.get(key)
        samples.append(time.perf_counter() - started)
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


async def throughput(target, key: str, clients: int, n: int) -> float:
    per_client = max(1, n // clients)

    async def worker():
        for _ in range(per_client):
            await target.get(key)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return per_client * clients / (time.perf_counter() - started)


async def median_seconds(call, n: int) -> float:
    """The median time of ``n`` awaits of ``call()`` in turn."""
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def invalidation_delays(writer: Sidecar, reader: Sidecar, n: int) -> list[float]:
    """Seconds from a write through ``writer`` returning to ``reader`` (near cache) reading its value,
    the key being held in ``reader``'s near cache before each write."""
    delays = []
    for i in range(n):
        value = f"v{i}".encode()
        await reader.cache.get("inval")
        await writer.set("inval", value)
        written = time.perf_counter()
        while await reader.cache.get("inval") != value:
            pass
        delays.append(time.perf_counter() - written)
    return delays


async def run(args) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="agentcache-bench-"))
    procs = []
    valkey_proc, valkey_sock = start_valkey(workdir)
    procs.append(valkey_proc)
    try:
        sidecars = {}
        for name, cache, services in [
            ("memory", {"backend": "memory", "max_memory_bytes": 1 << 30}, None),
            (
                "valkey",
                {"backend": "valkey"},
                {"valkey": {"config": {"url": f"unix://{valkey_sock}", "max_connections": 64}}},
            ),
            (
                "valkey-far",
                {"backend": "valkey"},
                {"valkey": {"config": {"url": f"unix://{valkey_sock}", "max_connections": 64}}},
            ),
            ("file", {"backend": "file", "storage_dir": str(workdir / "files"), "max_file_size": 1 << 20}, None),
        ]:
            proc, sock = start_sidecar(workdir, name, cache, services)
            procs.append(proc)
            sidecars[name] = sock
        targets = [
            Direct(valkey_sock),
            Sidecar("b sidecar/memory", sidecars["memory"]),
            Sidecar("c sidecar/valkey+near", sidecars["valkey"]),
            Sidecar("d sidecar/valkey", sidecars["valkey-far"]),
            Sidecar("e sidecar/file", sidecars["file"]),
        ]
        many_keys = [f"many:{i}" for i in range(MANY)]
        for target in targets:
            for size_name, size in SIZES.items():
                await target.set(f"k{size_name}", os.urandom(size))
            for key in many_keys:
                await target.set(key, b"v" * 100)
            await serial_latency(target, "k100B", 200)  # warm-up

        results: dict[tuple, list[float]] = {}
        for _ in range(args.rounds):
            for size_name in SIZES:
                key = f"k{size_name}"
                n = args.requests if size_name == "100B" else args.requests // 4
                for target in targets:
                    p50, p99 = await serial_latency(target, key, n)
                    results.setdefault((target.label, size_name, "p50"), []).append(p50)
                    results.setdefault((target.label, size_name, "p99"), []).append(p99)
                    for clients in CONCURRENCY:
                        rps = await throughput(target, key, clients, n * 2)
                        results.setdefault((target.label, size_name, f"rps{clients}"), []).append(rps)
            for target in targets:
                results.setdefault((target.label, "many", "p50"), []).append(
                    await median_seconds(lambda: target.get_many(many_keys), max(5, args.requests // 200))
                )
            delays = await invalidation_delays(targets[3], targets[2], max(20, args.requests // 10))
            results.setdefault(("near", "inval", "p50"), []).append(statistics.median(delays))
            results.setdefault(("near", "inval", "max"), []).append(max(delays))
            many_items = {key: b"v" * 100 for key in many_keys}
            for target in targets:
                results.setdefault((target.label, "set_many", "p50"), []).append(
                    await median_seconds(lambda: target.set_many(many_items), max(5, args.requests // 200))
                )
        for target in targets:
            await target.close()
        report(results, targets, args)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)


def report(results, targets, args) -> None:
    med = {key: statistics.median(values) for key, values in results.items()}
    base = targets[0].label
    print(
        f"\nAgentCache sidecar benchmark: medians of {args.rounds} rounds, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}\n"
    )
    header = (
        f"{'value':6} {'system':20} {'GET p50 µs':>10} {'p99 µs':>8} {'x a':>6} {'1 client/s':>11} {'x a':>6} "
        f"{'32 clients/s':>13} {'x a':>6}"
    )
    print(header)
    print("-" * len(header))
    for size_name in SIZES:
        for target in targets:
            label = target.label
            p50 = med[(label, size_name, "p50")]
            p99 = med[(label, size_name, "p99")]
            r1 = med[(label, size_name, "rps1")]
            r32 = med[(label, size_name, "rps32")]
            print(
                f"{size_name:6} {label:20} {p50 * 1e6:10.0f} {p99 * 1e6:8.0f} "
                f"{p50 / med[(base, size_name, 'p50')]:6.2f} "
                f"{r1:11.0f} {r1 / med[(base, size_name, 'rps1')]:6.2f} {r32:13.0f} "
                f"{r32 / med[(base, size_name, 'rps32')]:6.2f}"
            )
    print(f"\nget_many of {MANY} keys (100 B values; the SDK's AsyncCache.get_many) vs one MGET (valkey-py):")
    for target in targets:
        value = med[(target.label, "many", "p50")]
        print(f"  {target.label:20} p50 {value * 1e3:7.2f} ms   x a {value / med[(base, 'many', 'p50')]:5.2f}")
    print(f"\nset_many of {MANY} keys (100 B values; AsyncCache.set_many) vs one pipeline of SETs (valkey-py):")
    for target in targets:
        value = med[(target.label, "set_many", "p50")]
        print(f"  {target.label:20} p50 {value * 1e3:7.2f} ms   x a {value / med[(base, 'set_many', 'p50')]:5.2f}")
    print(
        f"\nnear cache invalidation: a write through d returned -> c reads the new value: "
        f"median {med[('near', 'inval', 'p50')] * 1e6:.0f} µs, worst (median of the rounds' worst) "
        f"{med[('near', 'inval', 'max')] * 1e6:.0f} µs"
    )
    print(
        "\nLatency ratios: lower is better (b/a <= 1.0 is the target); throughput ratios: higher is better "
        "(c/a at 32 clients >= 1.0 is the target)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(run(args))


if __name__ == "__main__":
    main()
