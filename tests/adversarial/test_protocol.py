"""Stored metadata is data; an answer that cannot be encoded is a 500, not a dead connection; half-closed
clients get their answers; locks are bounded in TTL and number, and one the backend could not take is
not granted.

Before: a stored Content-Type with CRLF was echoed as injected headers and a non-latin-1 one killed the
connection's worker; half-closed clients (valkey, file) never got their answer; 200k locks +95 MB with a
10-year TTL; a read-only file backend granted its lock to every caller.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess

import pytest
import valkey

from agentcache import AsyncCache, cached
from agentcache_sidecar.backends import record
from agentcache_sidecar.backends.base import Entry
from agentcache_sidecar.budget import Budget
from agentcache_sidecar.config import Settings
from agentcache_sidecar.server import CacheServer, Limits, Response
from agentcache_sidecar.store import KEY_MARK

from .conftest import MAX_MEMORY, PeakRss, connect, raw_request, read_answer, read_full


def test_stored_content_types_are_checked_before_they_become_headers(sidecar_factory, valkey_server):
    sidecar = sidecar_factory(
        {
            "cache": {"backend": "valkey", "key_prefix": "m:"},
            "services": {"valkey": {"config": {"url": valkey_server.url}}},
        }
    )
    raw = valkey.Valkey.from_url(valkey_server.url)
    raw.set("m:" + KEY_MARK + "crlf", record.encode(Entry(b"one", "text/plain\r\nX-Injected: yes")))
    raw.set("m:" + KEY_MARK + "wide", record.encode(Entry(b"two", "text/pl\u00e4in\u2603")))
    sock = connect(sidecar.socket_path)
    for key, value in (("crlf", b"one"), ("wide", b"two"), ("crlf", b"one")):  # one connection throughout
        sock.sendall(raw_request(f"/v1/keys/{key}"))
        head, body = read_full(sock)
        assert head.startswith(b"HTTP/1.1 200") and body == value, head
        assert b"Content-Type: application/octet-stream\r\n" in head and b"X-Injected" not in head
    sock.close()
    metrics = subprocess.run(
        ["curl", "-s", f"http://127.0.0.1:{sidecar.metrics_port}/metrics"], capture_output=True, text=True, timeout=30
    ).stdout
    assert 'agentcache_rejections_total{reason="bad_stored_content_type"} 3.0' in metrics


async def test_an_answer_that_cannot_be_encoded_is_a_500_and_the_connection_lives(tmp_path):
    async def route_request(request):
        if request.path == "/bad":
            return Response(200, b"x", {"Content-Type": "text/plain\r\nInjected: 1"})
        return Response(200, b"fine", {"Content-Type": "text/plain"})

    server = CacheServer(
        lambda method, path: route_request,
        {},
        Budget.of(Settings()),
        Limits(max_line=8190),
        lambda url: (65536, "a body"),
    )
    path = str(tmp_path / "s.sock")
    await server.start(path)
    try:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(raw_request("/bad") + raw_request("/good"))
        answers = (await asyncio.wait_for(reader.read(4096), 5)).decode()
        while answers.count("HTTP/1.1") < 2:
            answers += (await asyncio.wait_for(reader.read(4096), 5)).decode()
        assert answers.startswith("HTTP/1.1 500") and "Injected" not in answers
        assert answers.rstrip().endswith("fine")
        writer.close()
    finally:
        await server.close(1)


@pytest.mark.parametrize("backend", ["valkey", "file"])
def test_a_half_closed_client_gets_its_answer(sidecar_factory, valkey_server, tmp_path, backend):
    config = {
        "cache": {"backend": backend, "key_prefix": "h:", "storage_dir": str(tmp_path / "files")},
        "services": {"valkey": {"config": {"url": valkey_server.url}}},
    }
    sidecar = sidecar_factory(config)
    for request, expected in (
        (raw_request("/v1/keys/k", "PUT", b"written"), (204, b"")),
        (raw_request("/v1/keys/k"), (200, b"written")),
    ):
        sock = connect(sidecar.socket_path)
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        assert read_answer(sock) == expected
        sock.close()


def test_locks_are_bounded_in_ttl_and_number(guarded):
    sidecar = guarded({"max_locks": 1000})
    sock = connect(sidecar.socket_path)
    answers = sock.makefile("rb")
    with PeakRss(sidecar.proc.pid) as memory:
        before = memory.peak
        ttls = set()
        for start in range(0, 20000, 500):  # pipelined, 500 at a time
            sock.sendall(
                b"".join(raw_request(f"/v1/keys/l{i}/lock?ttl=315360000", "POST") for i in range(start, start + 500))
            )
            for _ in range(500):
                assert answers.readline().startswith(b"HTTP/1.1 200")
                length = 0
                while (line := answers.readline()) != b"\r\n":
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                ttls.add(json.loads(answers.read(length))["ttl"])
    answers.close()
    sock.close()
    assert ttls == {600.0}, "a lock lives at most max_lock_ttl"
    assert memory.peak - before < 16 * 2**20, f"+{(memory.peak - before) >> 20} MiB for 20,000 locks"
    assert memory.peak < MAX_MEMORY


async def test_a_lock_the_backend_cannot_take_is_not_granted(sidecar_factory, tmp_path, caplog):
    storage = tmp_path / "files"
    sidecar = sidecar_factory({"cache": {"backend": "file", "storage_dir": str(storage), "key_prefix": "r:"}})
    if os.geteuid() != 0:
        (storage / "locks").chmod(0o555)
    else:  # root ignores permissions: the lock directory cannot be made where a file stands
        (storage / "locks").rmdir()
        (storage / "locks").write_text("in the way")
    sock = connect(sidecar.socket_path)
    sock.sendall(raw_request("/v1/keys/job/lock?ttl=30", "POST"))
    status, body = read_answer(sock)
    sock.close()
    assert (status, json.loads(body)["error"]) == (409, "lock_unavailable")

    runs = []
    cache = AsyncCache(sidecar.socket_path)

    @cached(ttl=60, cache=cache, key_template="job:{n}")
    async def job(n):
        runs.append(n)
        return n

    with caplog.at_level(logging.WARNING, logger="agentcache"):
        assert [await job(1), await job(2)] == [1, 2]
    await cache.close()
    assert runs == [1, 2], "computed without single-flight"
    assert sum("without single-flight" in r.getMessage() for r in caplog.records) == 1, "said once"
