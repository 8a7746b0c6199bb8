"""One way for tests to run the real processes they talk to (sidecar, valkey-server, injector, Prometheus...).

``Launched.launch`` starts a command with its output in a log file and returns once ``ready()`` holds; a
process that exits first, or is not ready in time, is stopped and raises ``RuntimeError`` carrying its log.
``free_port`` hands out the TCP ports they listen on.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def free_port(below: int = 55536) -> int:
    """A free TCP port on 127.0.0.1, below 55536 so that a Valkey cluster bus port (port + 10000) is valid too."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < below:
            return port


class Launched:
    """A child process whose stdout and stderr go to ``log_path``."""

    def __init__(self, name: str, log_path: Path):
        self.name = name
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(
        self,
        command: list[str],
        ready: Callable[[], bool],
        *,
        timeout: float = 15.0,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        interval: float = 0.03,
    ) -> None:
        """Start ``command`` and poll ``ready`` until it holds."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"{self.name} exited with {code}:\n{self.log()}")
            if ready():
                return
            time.sleep(interval)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout:g} s:\n{self.log()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for the exit status: the graceful path."""
        assert self.proc is not None, f"{self.name} is not running"
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def stop(self, grace: float = 0.0) -> None:
        """SIGTERM and up to ``grace`` seconds to exit, then SIGKILL (at once when ``grace`` is 0)."""
        if self.proc is not None and self.proc.poll() is None:
            if grace:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
