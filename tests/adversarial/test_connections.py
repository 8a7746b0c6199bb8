"""Connections that send nothing or half a request are bounded in number and in time.

Before: all 3,000 were held open forever and, at the fd limit, new clients got ECONNRESET.
"""

from __future__ import annotations

import json
import resource
import socket
import time
from pathlib import Path

from .conftest import MAX_MEMORY, GoodClient, PeakRss, connect, read_answer, start_sidecars_with

ATTACKERS = 1500
CAP = 1000


def test_idle_and_half_sent_connections_are_capped_and_timed_out(guarded):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, ATTACKERS + 512)), hard))
    sidecar = guarded({"max_connections": CAP, "header_timeout": 2.0})
    held: list[socket.socket] = []
    refused = []
    with GoodClient(sidecar.socket_path) as good, PeakRss(sidecar.proc.pid) as memory:
        try:
            for i in range(ATTACKERS):
                sock = connect(sidecar.socket_path)
                if i % 2:
                    sock.sendall(b"GET /v1/keys/x HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # half a head, never finished
                held.append(sock)
            time.sleep(0.5)
            for sock in held[CAP - 1 :]:  # beyond the cap (the good client holds one): a JSON 503, never a reset
                status, body = read_answer(sock)
                refused.append((status, json.loads(body)["error"]))
            time.sleep(3.0)  # past header_timeout: the sidecar has closed the idle and half-sent ones
            closed = 0
            for sock in held[: CAP - 1]:
                sock.settimeout(2)
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:
                    data = b""
                closed += data == b"" or data.startswith(b"HTTP/1.1 408")
        finally:
            for sock in held:
                sock.close()
        fresh = connect(sidecar.socket_path)
        fresh.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(fresh)[0] == 200, "a new client is served once the attackers are gone"
        fresh.close()
    good.check()
    assert refused == [(503, "busy")] * (ATTACKERS - CAP + 1)
    assert closed == CAP - 1, f"only {closed} of {CAP - 1} idle connections were closed by header_timeout"
    assert memory.peak < MAX_MEMORY, f"peak RSS {memory.peak >> 20} MiB"


def test_the_soft_fd_limit_is_raised_to_the_hard_limit(guarded, monkeypatch):
    """Started with a soft RLIMIT_NOFILE of 256, the sidecar serves with its hard limit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    start_sidecars_with(monkeypatch, lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)))
    sidecar = guarded()
    limits = Path(f"/proc/{sidecar.proc.pid}/limits").read_text()
    (line,) = [line for line in limits.splitlines() if line.startswith("Max open files")]
    assert line.split()[3:5] == [str(hard), str(hard)], line
