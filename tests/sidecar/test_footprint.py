"""What keeps the sidecar light, pinned without timing (the figures are bench/footprint.py's):
one HTTP stack (``server.py``) serves both the socket and the TCP listener of probes and metrics."""

from __future__ import annotations

import socket

from prometheus_client import CONTENT_TYPE_LATEST

from agentcache_sidecar.metrics import SIDECAR_METRICS


def tcp(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """One request on a fresh connection: the status line, the headers (lower-case names) and the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return status, headers, body


def get(port: int, path: str, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    return tcp(port, f"{method} {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n".encode())


def test_the_tcp_listener_serves_metrics_and_probes_with_the_sidecars_own_server(memory_sidecar):
    port = memory_sidecar.metrics_port
    status, headers, body = get(port, "/metrics")
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == CONTENT_TYPE_LATEST
    assert int(headers["content-length"]) == len(body)
    assert "server" not in headers  # aiohttp named itself here
    text = body.decode()
    for name in SIDECAR_METRICS:
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    status, headers, body = get(port, "/healthz")
    assert (status, body) == ("HTTP/1.1 200 OK", b'{"status": "ok"}')
    status, _, body = get(port, "/readyz")
    assert status == "HTTP/1.1 200 OK" and b'"ready": true' in body
    status, headers, body = get(port, "/readyz", "HEAD")
    assert status == "HTTP/1.1 200 OK" and body == b""


def test_the_tcp_listener_answers_other_paths_and_methods_with_json_errors(memory_sidecar):
    port = memory_sidecar.metrics_port
    status, _, body = get(port, "/v1/keys/a")
    assert status == "HTTP/1.1 404 Not Found" and b'"error": "not_found"' in body
    status, headers, _ = get(port, "/metrics", "DELETE")
    assert status == "HTTP/1.1 405 Method Not Allowed" and headers["allow"] == "GET, HEAD"
    status, _, body = tcp(port, b"NOT HTTP\r\n\r\n")
    assert status == "HTTP/1.1 400 Bad Request"
