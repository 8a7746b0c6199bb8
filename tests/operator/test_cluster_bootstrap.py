"""The cluster bootstrap script, run as shipped against six real valkey-server processes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from agentcache_operator.render.cluster import BOOTSTRAP_SCRIPT
from tests.support.process import free_port
from tests.support.tools import require_tool
from tests.support.valkey import ValkeyProcess

PASSWORD = "bootstrap-test-password"
NODES = 6
REPLICAS_PER_SHARD = 1


def cli(cli_path: str, node: ValkeyProcess, *args: str) -> str:
    result = subprocess.run(
        [cli_path, "-h", "127.0.0.1", "-p", str(node.port), *args],
        capture_output=True,
        text=True,
        timeout=10,
        env={**os.environ, "REDISCLI_AUTH": PASSWORD},
        check=True,
    )
    return result.stdout


@pytest.fixture
def cluster_nodes(tmp_path):
    """Six cluster-enabled, password-protected, not yet joined valkey-servers."""
    cli_path = require_tool("valkey-cli")
    nodes = []
    try:
        for i in range(NODES):
            workdir = tmp_path / f"node{i}"
            node = ValkeyProcess(
                workdir,
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(workdir / "nodes.conf"),
                    "--cluster-port",
                    str(free_port()),
                    "--cluster-node-timeout",
                    "2000",
                ],
            )
            nodes.append(node.start())
            protect(cli_path, node)
        yield cli_path, nodes
    finally:
        for node in nodes:
            node.stop()


def protect(cli_path: str, node: ValkeyProcess) -> None:
    """Set the password after start: ValkeyProcess checks readiness with a bare PING."""
    for setting in ("masterauth", "requirepass"):
        subprocess.run(
            [cli_path, "-p", str(node.port), "config", "set", setting, PASSWORD],
            check=True,
            capture_output=True,
            timeout=10,
        )


def bootstrap_command(cli_path: str, nodes: list[ValkeyProcess], tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    script = tmp_path / "bootstrap.sh"
    script.write_text(BOOTSTRAP_SCRIPT)
    env = {**os.environ, "REDISCLI_AUTH": PASSWORD, "PATH": f"{Path(cli_path).parent}:{os.environ['PATH']}"}
    return ["sh", str(script), str(REPLICAS_PER_SHARD), *(f"127.0.0.1:{node.port}" for node in nodes)], env


def run_bootstrap(cli_path: str, nodes: list[ValkeyProcess], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    command, env = bootstrap_command(cli_path, nodes, tmp_path)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def topology(cli_path: str, node: ValkeyProcess) -> list[tuple[str, str, str]]:
    """(node id, role, slots) of every node, as one node sees the cluster."""
    rows = []
    for line in cli(cli_path, node, "cluster", "nodes").splitlines():
        fields = line.split()
        role = "master" if "master" in fields[2] else "slave"
        rows.append((fields[0], role, " ".join(fields[8:])))
    return sorted(rows)


def wait_state_ok(cli_path: str, nodes: list[ValkeyProcess], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all("cluster_state:ok" in cli(cli_path, node, "cluster", "info") for node in nodes):
            return
        time.sleep(0.2)
    raise AssertionError("the cluster never reached cluster_state:ok on every node")


def test_bootstrap_forms_the_cluster_once_and_then_changes_nothing(cluster_nodes, tmp_path):
    cli_path, nodes = cluster_nodes
    assert "cluster_known_nodes:1" in cli(cli_path, nodes[0], "cluster", "info")

    first = run_bootstrap(cli_path, nodes, tmp_path)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "forming a cluster of 6 nodes" in first.stdout
    wait_state_ok(cli_path, nodes)
    formed = topology(cli_path, nodes[0])
    assert [role for _, role, _ in formed].count("master") == 3
    assert [role for _, role, _ in formed].count("slave") == 3
    assert all(slots for _, role, slots in formed if role == "master")

    second = run_bootstrap(cli_path, nodes, tmp_path)
    assert second.returncode == 0, second.stderr + second.stdout
    assert "already formed" in second.stdout and "forming" not in second.stdout
    assert topology(cli_path, nodes[0]) == formed
    cli(cli_path, nodes[0], "-c", "set", "k", "v")
    assert cli(cli_path, nodes[3], "-c", "get", "k").strip() == "v"


@pytest.mark.e2e
def test_bootstrap_waits_for_nodes_that_are_not_up_yet(cluster_nodes, tmp_path):
    cli_path, nodes = cluster_nodes
    late = nodes[-1]
    late.stop()
    command, env = bootstrap_command(cli_path, nodes, tmp_path)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(1.5)
        assert process.poll() is None, "the script must wait for the missing node"
        protect(cli_path, late.start())
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err + out
    assert f"waiting for 127.0.0.1:{late.port}" in out
    wait_state_ok(cli_path, nodes)
