"""Run real ``agentcache-sidecar`` processes for tests and talk to them over their Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp import ClientSession, UnixConnector

from .process import Launched, free_port


class SidecarProcess(Launched):
    """A sidecar started with a config written from ``config`` (a dict in agent_config.yaml shape)."""

    def __init__(self, workdir: Path, config: dict, env: dict | None = None):
        super().__init__("sidecar", workdir / "sidecar.log")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_path = str(workdir / "cache.sock")
        self.metrics_port = free_port()
        config = {**config}
        config["sidecar"] = {
            "socket_path": self.socket_path,
            "metrics_port": self.metrics_port,
            **config.get("sidecar", {}),
        }
        self.socket_path = config["sidecar"]["socket_path"]
        self.metrics_port = config["sidecar"]["metrics_port"]
        self.config_path = workdir / "agent_config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.env = env or {}

    def start(self, timeout: float = 15.0) -> SidecarProcess:
        self.launch(
            [sys.executable, "-m", "agentcache_sidecar.main", "--config", str(self.config_path)],
            self._healthy,
            timeout=timeout,
            env=self.env,
            cwd=self.workdir,
        )
        return self

    def _healthy(self) -> bool:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(1)
        try:
            sock.connect(self.socket_path)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return sock.recv(32).startswith(b"HTTP/1.1 200")
        except OSError:
            return False
        finally:
            sock.close()

    def session(self) -> ClientSession:
        """An aiohttp session over the socket; URLs are ``http://sidecar/...``."""
        return ClientSession(connector=UnixConnector(path=self.socket_path), base_url="http://sidecar")


async def mixed_load(http, stop: asyncio.Event, statuses: Counter, writes: list | None = None, seed: int = 7) -> None:
    """One client of an agent: reads, writes, batch reads and deletes until ``stop``.

    Counts every answer's status; with ``writes``, records each write as (time, degraded).
    """
    rng = random.Random(seed)
    while not stop.is_set():
        key = f"k{rng.randrange(50)}"
        choice = rng.random()
        if choice < 0.5:
            request = http.get(f"/v1/keys/{key}")
        elif choice < 0.8:
            request = http.put(f"/v1/keys/{key}", data=b"v" * rng.randrange(1, 2000))
        elif choice < 0.9:
            request = http.post("/v1/batch/get", json={"keys": [key, "k1", "k2"]})
        else:
            request = http.delete(f"/v1/keys/{key}")
        async with request as resp:
            await resp.read()
            statuses[resp.status] += 1
            if writes is not None and resp.method == "PUT":
                writes.append((time.monotonic(), "X-Cache-Degraded" in resp.headers))


@contextlib.contextmanager
def sidecar_on(backend: str, workdir: Path, key_prefix: str) -> Iterator[SidecarProcess]:
    """A real sidecar on ``backend`` (memory, or valkey with a valkey-server of its own), stopped after."""
    from .valkey import ValkeyProcess

    config: dict = {"cache": {"backend": backend, "key_prefix": key_prefix}}
    valkey = None
    if backend == "valkey":
        valkey = ValkeyProcess(workdir / "valkey").start()
        config["services"] = {"valkey": {"config": {"url": valkey.url}}}
    process = SidecarProcess(workdir / "sidecar", config).start()
    try:
        yield process
    finally:
        process.stop()
        if valkey:
            valkey.stop()


@pytest.fixture
def sidecar_factory(tmp_path):
    """Start sidecars with given configs; all are stopped at the end of the test."""
    started: list[SidecarProcess] = []

    def start(config: dict | None = None, name: str = "sidecar", env: dict | None = None) -> SidecarProcess:
        process = SidecarProcess(tmp_path / f"{name}-{len(started)}", config or {}, env).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def memory_sidecar(sidecar_factory):
    return sidecar_factory({"cache": {"backend": "memory", "key_prefix": "t:"}})


@pytest.fixture
def valkey_sidecar(sidecar_factory, valkey_server):
    return sidecar_factory(
        {
            "cache": {"backend": "valkey", "key_prefix": "t:"},
            "services": {"valkey": {"config": {"url": valkey_server.url}}},
        }
    )
