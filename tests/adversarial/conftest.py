"""What the adversarial tests share: a sidecar with ``max_memory: 128Mi``, its RSS, a well-behaved client.

Every attack is bounded in count and time, aims only at the sidecar's Unix socket
(or a local valkey-server) and stops by itself. The budgets asserted hold on a
loaded two-core machine; bench/adversarial.py measures the real figures.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest

MAX_MEMORY = 128 * 2**20
GOOD_P50 = 0.05
"""A well-behaved client's median latency under attack (seconds)."""
MIN_SAMPLES = 5


def rss(pid: int) -> int:
    """Resident bytes of a process now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class PeakRss:
    """Samples a process's RSS every 20 ms in a thread; ``peak`` is the largest seen."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def raw_request(path: str, method: str = "GET", body: bytes = b"", headers: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}"
    if body or method in ("PUT", "POST"):
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def read_answer(sock: socket.socket, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of one answer on a keep-alive connection (Content-Length framed)."""
    head, body = read_full(sock, timeout)
    return int(head.split()[1]), body


def read_full(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bytes]:
    """Head and body of one answer on a keep-alive connection (Content-Length framed)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head, rest[:length]


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


class GoodClient:
    """A well-behaved agent on its own keep-alive connection: GETs a small key in a loop, times each answer."""

    def __init__(self, socket_path: str, key: str = "good"):
        self.sock = connect(socket_path)
        self.key = key
        self.sock.sendall(raw_request(f"/v1/keys/{key}", "PUT", b"fine"))
        assert read_answer(self.sock)[0] == 204
        self.latencies: list[float] = []
        self.statuses: list[int] = []
        self.wrong = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        request = raw_request(f"/v1/keys/{self.key}")
        while not self._stop.is_set():
            started = time.monotonic()
            self.sock.sendall(request)
            status, body = read_answer(self.sock, timeout=30)
            self.latencies.append(time.monotonic() - started)
            self.statuses.append(status)
            self.wrong += status == 200 and body != b"fine"
            time.sleep(0.005)

    def __enter__(self) -> GoodClient:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        deadline = time.monotonic() + 5  # a short attack: still take enough samples to judge
        while len(self.latencies) < MIN_SAMPLES and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.01)
        self._stop.set()
        self._thread.join(timeout=60)
        self.sock.close()

    def check(self) -> None:
        """Answered, quickly at the median, never a 5xx, never a wrong value."""
        assert len(self.latencies) >= MIN_SAMPLES, "the well-behaved client was starved"
        p50 = statistics.median(self.latencies)
        assert p50 < GOOD_P50, f"well-behaved client's p50 {p50 * 1000:.1f} ms"
        assert all(s == 200 for s in self.statuses), sorted(set(self.statuses))
        assert self.wrong == 0


def start_sidecars_with(monkeypatch, preexec) -> None:
    """Sidecars started from now on run ``preexec`` in their process before exec (limits, signals)."""
    popen = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda *args, **kwargs: popen(*args, preexec_fn=preexec, **kwargs))


@pytest.fixture
def guarded(sidecar_factory):
    """Start a sidecar with ``max_memory: 128Mi`` plus ``sidecar`` overrides (memory backend by default)."""

    def start(sidecar: dict | None = None, cache: dict | None = None, services: dict | None = None):
        config = {
            "cache": {"backend": "memory", "key_prefix": "adv:", **(cache or {})},
            "sidecar": {"max_memory": "128Mi", **(sidecar or {})},
        }
        if services:
            config["services"] = services
        return sidecar_factory(config)

    return start
