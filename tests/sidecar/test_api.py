"""The HTTP API of docs/design.md §3, against a real sidecar process on a Unix socket."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time

import pytest
from aiohttp import ClientSession, TCPConnector
from yarl import URL

from agentcache_sidecar.store import KEY_MARK


@pytest.fixture
async def http(memory_sidecar):
    async with memory_sidecar.session() as session:
        yield session


async def put(http, key: str, body: bytes = b"v", **params):
    async with http.put(f"/v1/keys/{key}", data=body, params=params) as resp:
        return resp.status, await resp.read()


async def test_put_get_round_trip_with_content_type_and_ttl(http):
    async with http.put(
        "/v1/keys/greeting", data=b'{"a": 1}', params={"ttl": "60"}, headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 204
    async with http.get("/v1/keys/greeting") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert 59 <= float(resp.headers["X-Cache-TTL"]) <= 60
        assert await resp.read() == b'{"a": 1}'


async def test_miss_is_404_json(http):
    async with http.get("/v1/keys/nothing") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"] == "miss"


async def test_head_delete_and_ttl_endpoint(http):
    await put(http, "k", ttl="0")
    async with http.head("/v1/keys/k") as resp:
        assert resp.status == 200
    async with http.get("/v1/keys/k/ttl") as resp:
        assert await resp.json() == {"ttl": -1}
    async with http.delete("/v1/keys/k") as resp:
        assert resp.status == 204
    async with http.delete("/v1/keys/k") as resp:
        assert resp.status == 404
    async with http.head("/v1/keys/k") as resp:
        assert resp.status == 404
    async with http.get("/v1/keys/k/ttl") as resp:
        assert resp.status == 404


async def test_value_expires_and_stale_read(http):
    await put(http, "s", b"old", ttl="0.2", stale_ttl="30")
    await asyncio.sleep(0.3)
    async with http.get("/v1/keys/s") as resp:
        assert resp.status == 404
    async with http.get("/v1/keys/s", params={"allow_stale": "1"}) as resp:
        assert resp.status == 200
        assert resp.headers["X-Cache-Stale"] == "1"
        assert await resp.read() == b"old"


async def test_percent_encoded_keys_are_decoded_once(http):
    await put(http, "a%2Fb%20c%25", b"enc")
    async with http.get("/v1/keys?pattern=*") as resp:
        assert (await resp.json())["keys"] == ["a/b c%"]
    async with http.get("/v1/keys/a%2Fb%20c%25") as resp:
        assert await resp.read() == b"enc"


async def test_batch_operations(http):
    blob = {"$base64": base64.b64encode(b"\x00\xff").decode(), "content_type": "application/octet-stream"}
    packed = {"$base64": base64.b64encode(b"\x81\xa1a\x01").decode(), "content_type": "application/msgpack"}
    items = {"user:1": {"name": "Alice"}, "user:2": [1, 2], "blob": blob, "packed": packed}
    async with http.post("/v1/batch/set", json={"items": items, "ttl": 60}) as resp:
        assert resp.status == 204
    async with http.post("/v1/batch/get", json={"keys": ["user:1", "user:2", "blob", "packed", "user:9"]}) as resp:
        values = (await resp.json())["values"]
    assert values == {**items, "user:9": None}
    async with http.get("/v1/keys/user:1") as resp:
        assert resp.headers["Content-Type"] == "application/json"
    async with http.get("/v1/keys/packed") as resp:
        assert resp.headers["Content-Type"] == "application/msgpack"
        assert await resp.read() == b"\x81\xa1a\x01"
    async with http.post("/v1/batch/delete", json={"keys": ["user:1", "user:9"]}) as resp:
        assert await resp.json() == {"deleted": 1}


async def test_delete_pattern_list_and_clear(http):
    for key in ["user:1:prefs", "user:1:history", "user:2:prefs", "other"]:
        await put(http, key)
    async with http.get("/v1/keys", params={"pattern": "user:*", "limit": "2"}) as resp:
        assert len((await resp.json())["keys"]) == 2
    async with http.delete("/v1/keys", params={"pattern": "user:1:*"}) as resp:
        assert await resp.json() == {"deleted": 2}
    async with http.get("/v1/keys") as resp:
        assert (await resp.json())["keys"] == ["other", "user:2:prefs"]
    async with http.delete("/v1/keys") as resp:
        assert await resp.json() == {"deleted": 2}


async def test_lock_endpoints(http):
    async with http.post("/v1/keys/job/lock", params={"ttl": "5"}) as resp:
        assert resp.status == 200
        token = (await resp.json())["token"]
    async with http.post("/v1/keys/job/lock", params={"ttl": "5"}) as resp:
        assert resp.status == 409
    async with http.delete("/v1/keys/job/lock", params={"token": "wrong"}) as resp:
        assert resp.status == 409
    async with http.delete("/v1/keys/job/lock", params={"token": token}) as resp:
        assert resp.status == 204
    async with http.post("/v1/keys/job/lock", params={"ttl": "5"}) as resp:
        assert resp.status == 200


async def test_stats_and_health(http):
    await put(http, "a")
    async with http.get("/v1/keys/a"):
        pass
    async with http.get("/v1/keys/b"):
        pass
    async with http.get("/v1/stats") as resp:
        stats = await resp.json()
    assert stats["backend"] == "memory"
    assert (stats["hits"], stats["misses"], stats["hit_rate"], stats["key_count"]) == (1, 1, 0.5, 1)
    assert stats["memory_usage"] > 0
    for path in ("/healthz", "/readyz"):
        async with http.get(path) as resp:
            assert resp.status == 200


@pytest.mark.parametrize(
    "method, path, body, status, code",
    [
        ("GET", "/v1/keys/" + "k" * 1025, None, 400, "bad_key"),
        ("GET", "/v1/keys/a%01b", None, 400, "bad_key"),
        ("GET", "/v1/keys/a%0Ab", None, 400, "bad_key"),
        ("GET", "/v1/keys/a%zzb", None, 400, "bad_key"),
        ("GET", "/v1/keys/a%2", None, 400, "bad_key"),
        ("GET", "/v1/keys/%ff%fe", None, 400, "bad_key"),
        ("PUT", "/v1/keys/k?ttl=-1", b"v", 400, "bad_ttl"),
        ("PUT", "/v1/keys/k?ttl=abc", b"v", 400, "bad_ttl"),
        ("PUT", "/v1/keys/k?ttl=nan", b"v", 400, "bad_ttl"),
        ("PUT", "/v1/keys/k?ttl=inf", b"v", 400, "bad_ttl"),
        ("PUT", "/v1/keys/k?stale_ttl=-5", b"v", 400, "bad_ttl"),
        ("POST", "/v1/keys/k/lock?ttl=0", None, 400, "bad_ttl"),
        ("DELETE", "/v1/keys/k/lock", None, 400, "bad_token"),
        ("POST", "/v1/batch/get", b"{not json", 400, "bad_json"),
        ("POST", "/v1/batch/get", b'{"keys": "k"}', 400, "bad_json"),
        ("POST", "/v1/batch/get", b'{"keys": [1]}', 400, "bad_key"),
        ("POST", "/v1/batch/get", b"\xff\xfe", 400, "bad_json"),
        ("POST", "/v1/batch/set", b'{"items": {"k": 1}, "ttl": "x"}', 400, "bad_ttl"),
        ("POST", "/v1/batch/set", b'{"items": {"k": {"$base64": "!!"}}}', 400, "bad_json"),
        ("POST", "/v1/batch/set", b'{"items": [1]}', 400, "bad_json"),
        ("POST", "/v1/batch/set", b'{"items": {"k": {"$base64": "", "content_type": 5}}}', 400, "bad_content_type"),
        (
            "POST",
            "/v1/batch/set",
            b'{"items": {"k": {"$base64": "", "content_type": "a\\r\\nX-Evil: 1"}}}',
            400,
            "bad_content_type",
        ),
        ("POST", "/v1/batch/set", b'{"items": {"k": NaN}}', 400, "bad_json"),
        ("POST", "/v1/batch/set", b'{"items": {"a": 1}, "ttl": 1' + b"0" * 400 + b"}", 400, "bad_ttl"),
        ("POST", "/v1/batch/set", b'{"items": {"v": "\\ud800"}}', 400, "bad_json"),
        ("POST", "/v1/batch/get", b'{"keys": ["\\ud800"]}', 400, "bad_key"),
        ("POST", "/v1/batch/get", b'{"keys": ["a"], "x": ' + b"9" * 5000 + b"}", 400, "bad_json"),
        ("POST", "/v1/batch/set", b'{"items": {"d": ' + b"[" * 100000 + b"]" * 100000 + b"}}", 400, "bad_json"),
        ("GET", "/v1/keys/a%C2%85b", None, 400, "bad_key"),
        ("GET", "/v1/keys/k/", None, 404, "not_found"),
        ("POST", "/v1/batch/delete", b"[]", 400, "bad_json"),
        ("GET", "/v1/keys?limit=0", None, 400, "bad_limit"),
        ("GET", "/v1/keys?pattern=", None, 400, "bad_pattern"),
        ("PATCH", "/v1/keys/k", b"v", 405, "method_not_allowed"),
        ("POST", "/v1/keys/k", b"v", 405, "method_not_allowed"),
        ("GET", "/v1/keys/k/lock", None, 405, "method_not_allowed"),
        ("GET", "/v1/keys/k/nope", None, 404, "not_found"),
        ("GET", "/v1/batch/get", None, 405, "method_not_allowed"),
        ("GET", "/nope", None, 404, "not_found"),
    ],
)
async def test_bad_input_gets_json_4xx_and_sidecar_keeps_serving(http, method, path, body, status, code):
    async with http.request(method, URL(path, encoded=True), data=body) as resp:
        assert resp.status == status
        assert resp.headers["Content-Type"].startswith("application/json")
        assert (await resp.json())["error"] == code
    assert (await put(http, "still-alive"))[0] == 204


async def test_unknown_charset_and_broken_gzip_are_400(http):
    async with http.post(
        "/v1/batch/get", data=b'{"keys": []}', headers={"Content-Type": "application/json; charset=bogus"}
    ) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "bad_json"
    async with http.put("/v1/keys/gz", data=b"abc", headers={"Content-Encoding": "gzip"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "bad_body"
    assert (await put(http, "still-alive"))[0] == 204


async def test_a_stored_json_value_too_deep_to_reencode_comes_back_as_bytes(http):
    deep = b"[" * 100000 + b"]" * 100000
    async with http.put("/v1/keys/deep", data=deep, headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 204
    async with http.post("/v1/batch/get", json={"keys": ["deep"]}) as resp:
        assert resp.status == 200
        value = (await resp.json())["values"]["deep"]
    assert base64.b64decode(value["$base64"]) == deep and value["content_type"] == "application/json"


async def test_json_that_looks_like_the_bytes_wrapper_is_not_mistaken_for_bytes(http):
    lookalike = {"$base64": "aGk="}
    async with http.put("/v1/keys/amb", data=json.dumps(lookalike), headers={"Content-Type": "application/json"}):
        pass
    async with http.post("/v1/batch/get", json={"keys": ["amb"]}) as resp:
        value = (await resp.json())["values"]["amb"]
    assert value["content_type"] == "application/json"
    assert json.loads(base64.b64decode(value["$base64"])) == lookalike


async def test_long_urls_and_headers_get_4xx_not_a_crash(http):
    async with http.get("/v1/keys/" + "a" * 20000) as resp:
        assert 400 <= resp.status < 500
    async with http.get("/v1/keys/x", headers={"X-Big": "b" * 20000}) as resp:
        assert 400 <= resp.status < 500
    assert (await put(http, "still-alive"))[0] == 204


async def test_oversized_values_are_413(sidecar_factory):
    sidecar = sidecar_factory({"sidecar": {"max_value_bytes": 1000}})
    async with sidecar.session() as http:
        assert await put(http, "big", b"x" * 1001) == (413, await _error_body(413))
        async with http.put("/v1/keys/chunked", data=_chunks(b"x" * 2000)) as resp:
            assert resp.status == 413
        async with http.post("/v1/batch/set", json={"items": {"a": "x" * 2000}}) as resp:
            assert resp.status == 413 and (await resp.json())["error"] == "too_large"
        assert (await put(http, "ok", b"x" * 1000))[0] == 204


async def _error_body(status):
    message = "a value (max_value_bytes) of 1001 bytes exceeds 1000 bytes"
    return json.dumps({"error": "too_large", "message": message}).encode()


async def _chunks(data: bytes):
    for i in range(0, len(data), 500):
        yield data[i : i + 500]


async def test_prefix_confinement(sidecar_factory, valkey_server):
    """Two tenants share one Valkey; nothing either agent sends reaches the other's keys."""
    import valkey

    common = {"services": {"valkey": {"config": {"url": valkey_server.url}}}}
    tenant_a = sidecar_factory({**common, "cache": {"backend": "valkey", "key_prefix": "a:"}}, name="a")
    tenant_b = sidecar_factory({**common, "cache": {"backend": "valkey", "key_prefix": "ab:"}}, name="b")
    raw = valkey.Valkey.from_url(valkey_server.url)
    raw.set("secret", b"outside")
    async with tenant_b.session() as b:
        await put(b, "secret", b"b-secret")
    async with tenant_a.session() as a:
        for attack in ["..%2Fsecret", "%2E%2E%2Fab%3Asecret", "b%3Asecret", "..", "%2A"]:
            async with a.get(f"/v1/keys/{attack}") as resp:
                assert resp.status in (404, 400)
        async with a.get("/v1/keys", params={"pattern": "*"}) as resp:
            assert (await resp.json())["keys"] == []
        async with a.get("/v1/keys", params={"pattern": "*secret*"}) as resp:
            assert (await resp.json())["keys"] == []
        for pattern in ["*", "b:*", "\\*", "[a-z]*", "../*"]:
            async with a.delete("/v1/keys", params={"pattern": pattern}) as resp:
                assert (await resp.json())["deleted"] == 0
        async with a.delete("/v1/keys") as resp:
            assert (await resp.json())["deleted"] == 0
        async with a.post("/v1/batch/get", json={"keys": ["b:secret", "../secret", "secret"]}) as resp:
            assert set((await resp.json())["values"].values()) == {None}
    assert raw.get("secret") == b"outside"
    assert raw.get("ab:" + KEY_MARK + "secret") is not None
    raw.close()


async def test_metrics_endpoint_exposes_design_metrics(memory_sidecar):
    from agentcache_sidecar.metrics import SIDECAR_METRICS

    async with memory_sidecar.session() as http:
        await put(http, "m")
        async with http.get("/v1/keys/m"):
            pass
    async with ClientSession(connector=TCPConnector()) as tcp:
        async with tcp.get(f"http://127.0.0.1:{memory_sidecar.metrics_port}/metrics") as resp:
            text = await resp.text()
        async with tcp.get(f"http://127.0.0.1:{memory_sidecar.metrics_port}/readyz") as resp:
            assert resp.status == 200
    for name in SIDECAR_METRICS:
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    assert 'agentcache_requests_total{op="get",result="hit"} 1.0' in text
    assert "agentcache_backend_up 1.0" in text
    assert "_created" not in text


async def test_socket_mode_from_config(sidecar_factory):
    sidecar = sidecar_factory({"sidecar": {"socket_mode": "0600"}})
    assert stat.S_IMODE(os.stat(sidecar.socket_path).st_mode) == 0o600


async def test_stale_socket_from_crash_does_not_stop_next_start(sidecar_factory, tmp_path):
    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    assert path.exists()
    sidecar = sidecar_factory({"sidecar": {"socket_path": str(path)}})
    async with sidecar.session() as http:
        assert (await put(http, "k"))[0] == 204


async def test_live_socket_is_not_stolen(memory_sidecar, tmp_path):
    config = tmp_path / "second.yaml"
    config.write_text(f"sidecar:\n  socket_path: {memory_sidecar.socket_path}\n  metrics_port: 0\n")
    result = subprocess.run(
        [sys.executable, "-m", "agentcache_sidecar.main", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "another process is serving" in result.stderr
    async with memory_sidecar.session() as http:
        assert (await put(http, "k"))[0] == 204


async def test_graceful_shutdown_finishes_in_flight_and_removes_socket(memory_sidecar):
    big = b"x" * (4 * 1024 * 1024)
    async with memory_sidecar.session() as http:
        await put(http, "big", big)

        async def read_big():
            async with http.get("/v1/keys/big") as resp:
                return resp.status, len(await resp.read())

        reads = [asyncio.create_task(read_big()) for _ in range(8)]
        await asyncio.sleep(0.01)
        code = await asyncio.to_thread(memory_sidecar.terminate)
        results = await asyncio.gather(*reads, return_exceptions=True)
    assert code == 0
    assert not os.path.exists(memory_sidecar.socket_path)
    completed = [r for r in results if not isinstance(r, BaseException)]
    assert completed and all(r == (200, len(big)) for r in completed)


async def test_disabled_cache_is_a_visible_pass_through(sidecar_factory):
    sidecar = sidecar_factory({"cache": {"backend": "memory", "enabled": False}})
    async with sidecar.session() as http:
        async with http.put("/v1/keys/k", data=b"v") as resp:
            assert resp.status == 204
            assert resp.headers["X-Cache-Degraded"] == "disabled"
        async with http.get("/v1/keys/k") as resp:
            assert resp.status == 404
        async with http.get("/v1/stats") as resp:
            stats = await resp.json()
    assert stats["enabled"] is False
    assert stats["dropped_writes"] == 1 and stats["misses"] == 1 and stats["key_count"] == 0


def test_bad_config_is_a_clear_error_not_a_traceback(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("cache:\n  backend: redis\n  default_ttl: soon\n")
    result = subprocess.run(
        [sys.executable, "-m", "agentcache_sidecar.main", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "cache.backend: 'redis'" in result.stderr and "memory, file or valkey" in result.stderr
    assert "cache.default_ttl: 'soon'" in result.stderr
    assert "Traceback" not in result.stderr


def _raw_exchange(socket_path: str, data: bytes, wait: float = 0.5) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(socket_path)
        sock.sendall(data)
        received = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
        return received


def test_pipelined_requests_are_answered_in_order_and_http10_closes(memory_sidecar):
    answer = _raw_exchange(
        memory_sidecar.socket_path,
        b"PUT /v1/keys/p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
        b"GET /v1/keys/p HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /nope HTTP/1.0\r\n\r\n",
    )
    statuses = re.findall(rb"HTTP/1\.1 \d{3} [A-Za-z ]+?(?=\r\n)", answer)
    assert statuses == [b"HTTP/1.1 204 No Content", b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found"]
    assert b"\r\n\r\nhi" in answer and answer.endswith(b'"no such resource: /nope"}')


def test_expect_100_continue_is_answered_at_once(memory_sidecar):
    """curl sends Expect: 100-continue for bodies over 1 KiB and waits a second unless told to go on."""
    started = time.monotonic()
    answer = _raw_exchange(
        memory_sidecar.socket_path,
        b"PUT /v1/keys/e HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nExpect: 100-continue\r\n\r\n",
        wait=0.3,
    )
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n") and time.monotonic() - started < 1


def test_malformed_http_gets_a_json_400_and_the_sidecar_keeps_serving(memory_sidecar):
    answer = _raw_exchange(memory_sidecar.socket_path, b"NOT HTTP AT ALL\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request") and b'"error": "bad_request"' in answer
    assert _raw_exchange(memory_sidecar.socket_path, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", wait=0.3).startswith(
        b"HTTP/1.1 200 OK"
    )


def test_raw_non_ascii_paths_are_a_json_400(memory_sidecar):
    """URLs are ASCII: keys travel percent-encoded."""
    for path in (b"/v1/keys/\xff\xfe", "/v1/keys/к".encode()):
        answer = _raw_exchange(memory_sidecar.socket_path, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 Bad Request") and b'"error": "bad_request"' in answer
