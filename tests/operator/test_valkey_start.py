"""The rendered valkey.conf and start.sh, run as shipped with a real valkey-server (primary + replica).

Only the address differs from a pod: the test rewrites the ``port``, ``bind`` and ``dir``
lines of the rendered valkey.conf, since 6379 and /data are not free here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentcache_operator.render import Cache
from agentcache_operator.render.valkey import config_data
from tests.support.shipped_valkey import ShippedValkey

from .examples import EXAMPLE_FILES, agent_cache

PASSWORD = "start-test-password"


@pytest.fixture
def replicated_pair(tmp_path):
    (path,) = [p for p in EXAMPLE_FILES if p.stem == "replicated"]
    data = config_data(Cache.from_body(agent_cache(path)))
    started = []
    try:
        primary = ShippedValkey(tmp_path / "primary", data, {"VALKEY_PASSWORD": PASSWORD}).start()
        started.append(primary)
        primary.wait(lambda: primary.cli("ping") == "PONG", "the primary")
        replica = ShippedValkey(
            tmp_path / "replica", data, {"VALKEY_PASSWORD": PASSWORD, "VALKEY_PRIMARY": f"127.0.0.1:{primary.port}"}
        ).start()
        started.append(replica)
        yield primary, replica
    finally:
        for server in started:
            server.stop()


@pytest.mark.e2e
def test_start_script_runs_a_password_protected_primary_and_replica(replicated_pair):
    primary, replica = replicated_pair
    assert "NOAUTH" in primary.cli("ping", auth=False)
    assert primary.cli("config", "get", "maxmemory").split() == ["maxmemory", str(512 * 2**20)]
    assert primary.cli("config", "get", "maxmemory-policy").split() == ["maxmemory-policy", "allkeys-lfu"]
    replica.wait(lambda: "master_link_status:up" in replica.cli("info", "replication"), "replication")
    assert primary.probe() and replica.probe(), "ready.sh: both serve"
    primary.cli("set", "greeting", "hello")
    replica.wait(lambda: replica.cli("get", "greeting") == "hello", "the key to replicate")
    assert "READONLY" in replica.cli("set", "x", "y")


@pytest.mark.e2e
def test_the_password_is_not_on_any_command_line(replicated_pair):
    for server in replicated_pair:
        server.wait(lambda s=server: s.cli("ping") == "PONG", "the server")
        pid = int(server.cli("info", "server").split("process_id:")[1].split()[0])
        assert PASSWORD.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
