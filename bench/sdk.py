"""Per-call overhead of the SDK: ``AsyncCache.get`` and ``Cache.get`` against raw requests over the same socket.

Starts one real sidecar (memory backend) and reads one small JSON value N times
with each client, alternating between them round by round so all see the same
machine noise:

- raw aiohttp: a ``ClientSession`` with a ``UnixConnector``, ``GET`` + ``read()``
  (the baseline for ``AsyncCache.get``, which adds key quoting, status and
  Content-Type handling and JSON decoding);
- raw http.client: a kept-alive ``HTTPConnection`` over the socket (the baseline
  for the blocking ``Cache.get``).

    .venv/bin/python bench/sdk.py [--calls 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from agentcache import AsyncCache, Cache

KEY = "bench:weather:london"
VALUE = {"location": "london", "temp_c": 18, "conditions": "cloudy", "hourly": list(range(24))}


def start_sidecar(workdir: Path) -> tuple[subprocess.Popen, str]:
    socket_path = str(workdir / "cache.sock")
    config = workdir / "agent_config.yaml"
    config.write_text(
        yaml.safe_dump({"cache": {"backend": "memory"}, "sidecar": {"socket_path": socket_path, "metrics_port": 0}})
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentcache_sidecar.main", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            Cache(socket_path).stats()
            return proc, socket_path
        except Exception:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the sidecar did not start")


class RawHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str):
        super().__init__("agentcache")
        self.socket_path = socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.socket_path)


async def measure(socket_path: str, calls: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"raw aiohttp": [], "AsyncCache.get": [], "raw http.client": [], "Cache.get": []}
    session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path))
    async_cache, sync_cache = AsyncCache(socket_path), Cache(socket_path)
    raw_sync = RawHTTPConnection(socket_path)
    url = "http://agentcache/v1/keys/bench%3Aweather%3Alondon"
    await async_cache.set(KEY, VALUE, ttl=0)
    clock = time.perf_counter_ns

    async def raw_async() -> None:
        async with session.get(url) as response:
            await response.read()

    def raw_blocking() -> None:
        raw_sync.request("GET", "/v1/keys/bench%3Aweather%3Alondon")
        raw_sync.getresponse().read()

    for _ in range(200):
        await raw_async()
        await async_cache.get(KEY)
        raw_blocking()
        sync_cache.get(KEY)
    for _ in range(calls):
        started = clock()
        await raw_async()
        samples["raw aiohttp"].append(clock() - started)
        started = clock()
        assert await async_cache.get(KEY) == VALUE
        samples["AsyncCache.get"].append(clock() - started)
        started = clock()
        raw_blocking()
        samples["raw http.client"].append(clock() - started)
        started = clock()
        assert sync_cache.get(KEY) == VALUE
        samples["Cache.get"].append(clock() - started)
    await session.close()
    await async_cache.close()
    sync_cache.close()
    raw_sync.close()
    return samples


def report(samples: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(values) / 1000 for name, values in samples.items()}
    p99 = {name: statistics.quantiles(values, n=100)[98] / 1000 for name, values in samples.items()}
    print(f"{'client':<18}{'median µs':>11}{'p99 µs':>10}")
    for name in samples:
        print(f"{name:<18}{medians[name]:>11.1f}{p99[name]:>10.1f}")
    for sdk, raw in (("AsyncCache.get", "raw aiohttp"), ("Cache.get", "raw http.client"), ("Cache.get", "raw aiohttp")):
        print(f"{sdk} / {raw}: {medians[sdk] / medians[raw]:.2f}x ({medians[sdk] - medians[raw]:+.1f} µs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agentcache-bench-") as tmp:
        proc, socket_path = start_sidecar(Path(tmp))
        try:
            samples = asyncio.run(measure(socket_path, args.calls))
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    print(f"{args.calls} gets of a {len(str(VALUE))}-character JSON value per client, memory backend, one socket")
    report(samples)


if __name__ == "__main__":
    main()
