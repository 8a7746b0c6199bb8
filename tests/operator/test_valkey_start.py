"""The rendered valkey.conf and start.sh, run as shipped with a real valkey-server (primary + replica).

Only the address differs from a pod: the test rewrites the ``port``, ``bind`` and ``dir``
lines of the rendered valkey.conf, since 6379 and /data are not free here.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from agentcache_operator.render import Cache
from agentcache_operator.render.valkey import SIDECAR_ACL_FILE, config_data
from tests.support.process import Launched, free_port
from tests.support.tools import require_tool

from .examples import EXAMPLE_FILES, agent_cache

PASSWORD = "start-test-password"
SIDECAR_PASSWORD = "sidecar-test-password"


class StartedValkey(Launched):
    """valkey-server started by the operator's start.sh, as a pod would run it."""

    def __init__(self, workdir: Path, data: dict[str, str], env: dict[str, str]):
        super().__init__("start.sh", workdir / "start.log")
        self.port = free_port()
        workdir.mkdir()
        conf = workdir / "valkey.conf"
        local = {"port": f"port {self.port}", "bind": "bind 127.0.0.1", "dir": f"dir {workdir}"}
        lines = [local.get(line.split()[0], line) for line in data["valkey.conf"].splitlines()]
        conf.write_text("\n".join(lines) + "\n")
        script = workdir / "start.sh"
        script.write_text(data["start.sh"])
        (workdir / SIDECAR_ACL_FILE).write_text(data[SIDECAR_ACL_FILE])
        server_dir = str(Path(require_tool("valkey-server")).parent)
        self.launch(
            ["sh", str(script)],
            lambda: True,
            env={
                "PATH": f"{server_dir}:{os.environ['PATH']}",
                "VALKEY_CONFIG": str(conf),
                "VALKEY_PASSWORD": PASSWORD,
                "VALKEY_SIDECAR_PASSWORD": SIDECAR_PASSWORD,
                **env,
            },
        )

    def cli(self, *args: str, password: str | None = PASSWORD) -> str:
        env = {**os.environ, **({"REDISCLI_AUTH": password} if password else {})}
        result = subprocess.run(
            [require_tool("valkey-cli"), "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=10,
        )
        return result.stdout.strip()

    def wait(self, predicate, what: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"valkey on port {self.port}: timed out waiting for {what}")


@pytest.fixture
def replicated_pair(tmp_path):
    (path,) = [p for p in EXAMPLE_FILES if p.stem == "replicated"]
    data = config_data(Cache.from_body(agent_cache(path)))
    started = []
    try:
        primary = StartedValkey(tmp_path / "primary", data, {})
        started.append(primary)
        primary.wait(lambda: primary.cli("ping") == "PONG", "the primary")
        replica = StartedValkey(tmp_path / "replica", data, {"VALKEY_PRIMARY": f"127.0.0.1:{primary.port}"})
        started.append(replica)
        yield primary, replica
    finally:
        for server in started:
            server.stop()


@pytest.mark.e2e
def test_start_script_runs_a_password_protected_primary_and_replica(replicated_pair):
    primary, replica = replicated_pair
    assert "NOAUTH" in primary.cli("ping", password=None)
    assert primary.cli("config", "get", "maxmemory").split() == ["maxmemory", str(512 * 2**20)]
    assert primary.cli("config", "get", "maxmemory-policy").split() == ["maxmemory-policy", "allkeys-lfu"]
    replica.wait(lambda: "master_link_status:up" in replica.cli("info", "replication"), "replication")
    primary.cli("set", "greeting", "hello")
    replica.wait(lambda: replica.cli("get", "greeting") == "hello", "the key to replicate")
    assert "READONLY" in replica.cli("set", "x", "y")


@pytest.mark.e2e
def test_the_password_is_not_on_any_command_line(replicated_pair):
    for server in replicated_pair:
        server.wait(lambda s=server: s.cli("ping") == "PONG", "the server")
        pid = int(server.cli("info", "server").split("process_id:")[1].split()[0])
        assert PASSWORD.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
