"""Run real ``agentcache-sidecar`` processes for tests and talk to them over their Unix socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from aiohttp import ClientSession, UnixConnector

from .valkey import free_port


class SidecarProcess:
    """A sidecar started with a config written from ``config`` (a dict in agent_config.yaml shape)."""

    def __init__(self, workdir: Path, config: dict, env: dict | None = None):
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
        self.env = {**os.environ, **(env or {})}
        self.log_path = workdir / "sidecar.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> "SidecarProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentcache_sidecar.main", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited with {self.proc.returncode}:\n{self.log()}")
            if os.path.exists(self.socket_path) and self._healthy():
                return self
            time.sleep(0.03)
        self.stop()
        raise RuntimeError(f"sidecar did not start:\n{self.log()}")

    def _healthy(self) -> bool:
        import socket

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

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: the graceful path."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def session(self) -> ClientSession:
        """An aiohttp session over the socket; URLs are ``http://sidecar/...``."""
        return ClientSession(connector=UnixConnector(path=self.socket_path), base_url="http://sidecar")


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
