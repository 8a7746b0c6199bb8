"""Tenants sharing one Valkey never reach each other's keys or locks; a managed Valkey's ACL confines a
sidecar whatever its config says.

Before: prefix ``a:`` read, listed and deleted ``a:b:``'s keys; a tenant with prefix
``agentcache-lock:a:`` freed ``a:``'s locks; an empty prefix was accepted and cleared everyone.
"""

from __future__ import annotations

import json
import subprocess
import sys

import valkey

from agentcache_operator.render import Cache
from agentcache_operator.render.sidecar_config import agent_config
from agentcache_operator.render.tenancy import acl_user
from agentcache_operator.render.valkey import config_data
from agentcache_sidecar.backends import record
from agentcache_sidecar.backends.base import Entry
from agentcache_sidecar.store import KEY_MARK
from tests.operator.examples import EXAMPLE_FILES, agent_cache
from tests.support.shipped_valkey import SIDECAR_PASSWORD, ShippedValkey

from .conftest import connect, raw_request, read_answer


def valkey_config(url: str, prefix: str, **extra) -> dict:
    return {
        "cache": {"backend": "valkey", "key_prefix": prefix},
        "services": {"valkey": {"config": {"url": url, **extra}}},
        "sidecar": {"fallback": "miss"},
    }


def ask(sock, path: str, method: str = "GET", body: bytes = b"") -> tuple[int, bytes]:
    sock.sendall(raw_request(path, method, body))
    return read_answer(sock)


def test_nested_prefixes_and_lock_lookalikes_never_cross(sidecar_factory, valkey_server):
    wide = connect(sidecar_factory(valkey_config(valkey_server.url, "a:"), name="wide").socket_path)
    narrow = connect(sidecar_factory(valkey_config(valkey_server.url, "a:b:"), name="narrow").socket_path)
    lookalike = connect(
        sidecar_factory(valkey_config(valkey_server.url, "agentcache-lock:a:"), name="lock").socket_path
    )
    assert ask(narrow, "/v1/keys/secret", "PUT", b"narrow's")[0] == 204
    assert ask(wide, "/v1/keys/b:secret")[0] == 404
    assert json.loads(ask(wide, "/v1/keys?pattern=*")[1])["keys"] == []
    assert json.loads(ask(wide, "/v1/keys", "DELETE")[1])["deleted"] == 0
    assert ask(narrow, "/v1/keys/secret") == (200, b"narrow's")

    assert ask(wide, "/v1/keys/job/lock?ttl=30", "POST")[0] == 200
    assert ask(lookalike, "/v1/keys/job", "DELETE")[0] == 404, "a data key is never another tenant's lock"
    assert json.loads(ask(lookalike, "/v1/keys", "DELETE")[1])["deleted"] == 0
    assert ask(wide, "/v1/keys/job/lock?ttl=30", "POST")[0] == 409, "the lock is still held"


def test_an_empty_prefix_is_refused_at_start(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("cache: {key_prefix: ''}\n")
    result = subprocess.run(
        [sys.executable, "-m", "agentcache_sidecar.main", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "cache.key_prefix" in result.stderr and "empty" in result.stderr


def test_the_acl_user_confines_a_sidecar_configured_with_another_tenants_prefix(sidecar_factory, tmp_path):
    """The managed Valkey as the operator renders it (valkey.conf, start.sh, sidecar.acl), a sidecar with the
    rendered config, and one with the same credentials but another tenant's prefix."""
    (path,) = [p for p in EXAMPLE_FILES if p.stem == "managed-standalone"]
    cache = Cache.from_body(agent_cache(path))
    server = ShippedValkey(tmp_path / "valkey", config_data(cache), {"VALKEY_PASSWORD": "start-test-password"}).start()
    try:
        server.wait(lambda: server.cli("ping") == "PONG", "valkey")
        url = f"valkey://127.0.0.1:{server.port}"
        admin = valkey.Valkey.from_url(url, password="start-test-password")
        victim_key = "agentcache:other:victim:" + KEY_MARK + "secret"
        admin.set(victim_key, record.encode(Entry(b"victim's")))
        rendered = agent_config(cache)["services"]["valkey"]["config"]
        credentials = {"username": rendered["username"], "password": SIDECAR_PASSWORD}
        own = connect(sidecar_factory(valkey_config(url, cache.key_prefix, **credentials), name="own").socket_path)
        hostile = connect(
            sidecar_factory(valkey_config(url, "agentcache:other:victim:", **credentials), name="hostile").socket_path
        )

        assert ask(own, "/v1/keys/mine", "PUT", b"ok")[0] == 204
        assert ask(own, "/v1/keys/mine") == (200, b"ok")
        assert ask(hostile, "/v1/keys/secret")[0] == 404, "the ACL refuses the read: a miss"
        assert json.loads(ask(hostile, "/v1/keys", "DELETE")[1])["deleted"] == 0
        status, _ = ask(hostile, "/v1/keys/secret", "PUT", b"overwritten")
        assert status == 204
        assert record.decode(admin.get(victim_key)).value == b"victim's"

        sidecar_user = valkey.Valkey.from_url(url, **credentials)
        for command in (
            ("KEYS", "*"),
            ("FLUSHALL",),
            ("CONFIG", "GET", "*"),
            ("DEBUG", "SLEEP", "0"),
            ("ACL", "LIST"),
            ("GET", victim_key),
        ):
            try:
                sidecar_user.execute_command(*command)
            except valkey.exceptions.ResponseError as exc:  # DEBUG is also off in the server's own config
                assert isinstance(exc, valkey.exceptions.NoPermissionError) or "DEBUG command not allowed" in str(exc)
                continue
            raise AssertionError(f"{acl_user(cache)} may run {command}")
    finally:
        server.stop()
