"""What keeps the sidecar light, pinned without timing (the figures are bench/footprint.py's):
one HTTP stack (``server.py``) serves both the socket and the TCP listener of probes and metrics, and a
sidecar imports only what its backend needs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from agentcache_sidecar.metrics import SIDECAR_METRICS
from tests.support.process import free_port


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


SERVE_AND_LIST_MODULES = textwrap.dedent(
    """
    import json, os, signal, socket, sys, threading, time

    def probe(sock_path, port):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.socket(socket.AF_UNIX) as unix:
                    unix.connect(sock_path)
                    unix.sendall(b"GET /healthz HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n")
                    assert unix.recv(64).startswith(b"HTTP/1.1 200")
                for path in ("/readyz", "/metrics"):
                    with socket.create_connection(("127.0.0.1", port)) as tcp:
                        tcp.sendall(f"GET {path} HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n".encode())
                        assert tcp.recv(64).startswith(b"HTTP/1.1 200")
                break
            except OSError:
                time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=probe, args=(sys.argv[1], int(sys.argv[2])), daemon=True).start()
    from agentcache_sidecar.main import main
    code = main(sys.argv[3:])
    print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
    """
)


def modules_of_a_sidecar(tmp_path, *args: str) -> set[str]:
    """The modules a sidecar process holds after it served the socket, /readyz and /metrics and stopped."""
    sock, port = str(tmp_path / "s.sock"), free_port()
    result = subprocess.run(
        [sys.executable, "-c", SERVE_AND_LIST_MODULES, sock, str(port), "--socket", sock, "--metrics-port", str(port),
         *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, result.stderr
    return set(report["modules"])


HEAVY = {"aiohttp", "pydantic", "pydantic_core", "valkey", "zstandard", "msgpack", "agentcache.client"}


def test_the_embedded_default_imports_no_second_http_stack_no_validator_library_and_no_unused_backend(tmp_path):
    loaded = modules_of_a_sidecar(tmp_path)
    assert "prometheus_client" in loaded and "agentcache_sidecar.probes" in loaded
    assert loaded & (HEAVY | {"yaml"}) == set()


@pytest.mark.parametrize("backend", ["memory", "file"])
def test_a_configured_backend_imports_only_what_it_needs(tmp_path, backend):
    config = tmp_path / "agent_config.yaml"
    config.write_text(f"cache:\n  backend: {backend}\n  storage_dir: {tmp_path / 'files'}\n")
    loaded = modules_of_a_sidecar(tmp_path, "--config", str(config))
    assert "yaml" in loaded
    assert loaded & HEAVY == set()
    assert ("agentcache_sidecar.backends.file" in loaded) == (backend == "file")
