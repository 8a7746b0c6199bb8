"""A managed Valkey cluster as the StatefulSet runs it, on local processes, and a load against it.

Every node runs the rendered start.sh (so heal.sh beside it) with the rendered valkey.conf; the
cluster is formed by the rendered bootstrap.sh, as the Job does. ``VALKEY_PEERS`` lists the nodes
by address, as the operator lists the pods' DNS names; ``node-<i>`` is each node's stable hostname.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from valkey.cluster import ClusterNode, ValkeyCluster

from agentcache_operator.render import Cache
from agentcache_operator.render.valkey import config_data
from tests.support.process import free_port
from tests.support.shipped_valkey import ShippedValkey
from tests.support.tools import require_tool

PASSWORD = "heal-test-password"
SLOTS = 16384


SHARDS = 3


def cluster_data(persistence: bool = False, replicas: int = 1) -> dict[str, str]:
    """The ConfigMap data of a 3-shard cluster with ``replicas`` per shard."""
    valkey = {
        "topology": "cluster",
        "shards": SHARDS,
        "replicasPerShard": replicas,
        "persistence": {"enabled": persistence},
    }
    body = {"metadata": {"name": "heal", "namespace": "agents"}, "spec": {"backend": "valkey", "valkey": valkey}}
    return config_data(Cache.from_body(body))


class Cluster:
    """Shipped nodes, 3 shards of ``replicas + 1``; ``nodes[i]`` plays pod ``<cache>-valkey-<i>``."""

    def __init__(self, root: Path, data: dict[str, str], replicas: int = 1):
        size = SHARDS * (1 + replicas)
        self.root = root
        self.data = data
        self.replicas = replicas
        self.ports = [free_port() for _ in range(size)]
        self.generation = [0] * size
        self.nodes = [self._node(i) for i in range(size)]

    def _node(self, i: int) -> ShippedValkey:
        env = {
            "VALKEY_PASSWORD": PASSWORD,
            "VALKEY_ANNOUNCE_HOSTNAME": f"node-{i}",
            "VALKEY_PEERS": " ".join(f"127.0.0.1:{port}" for port in self.ports),
        }
        return ShippedValkey(self.root / f"node{i}-{self.generation[i]}", self.data, env, port=self.ports[i])

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait(lambda n=node: n.cli("ping") == "PONG", "the node to answer")
        return self

    def bootstrap(self) -> None:
        script = self.root / "bootstrap.sh"
        script.write_text(self.data["bootstrap.sh"])
        env = {
            **os.environ,
            "REDISCLI_AUTH": PASSWORD,
            "PATH": f"{Path(require_tool('valkey-cli')).parent}:{os.environ['PATH']}",
        }
        result = subprocess.run(
            ["sh", str(script), str(self.replicas), *(node.address for node in self.nodes)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def restart_empty(self, i: int, graceful: bool = False) -> ShippedValkey:
        """Node ``i`` is replaced by a pod with a new, empty data directory (no nodes.conf).

        ``graceful``: the kubelet runs the preStop hook (handover.sh) first, as in a rollout or a drain.
        """
        if graceful:
            self.nodes[i].probe("handover.sh")
        self.nodes[i].stop()
        self.generation[i] += 1
        self.nodes[i] = self._node(i).start()
        return self.nodes[i]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def healthy(self) -> bool:
        """Every node: state ok, all slots served, only live nodes known, all ready; 3 primaries of ``replicas``."""
        for node in self.nodes:
            info = node.cli("cluster", "info")
            if (
                "cluster_state:ok" not in info
                or f"cluster_slots_ok:{SLOTS}" not in info
                or f"cluster_known_nodes:{len(self.nodes)}" not in info
                or not node.probe()
            ):
                return False
        rows = [line.split() for line in self.nodes[0].cli("cluster", "nodes").splitlines()]
        primaries = [row[0] for row in rows if "master" in row[2]]
        replicas_of = sorted(row[3] for row in rows if "slave" in row[2])
        return len(primaries) == SHARDS and replicas_of == sorted(primaries * self.replicas)

    def wait_healthy(self, timeout: float) -> float:
        """Seconds until ``healthy()``; fails after ``timeout``."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.healthy():
                return time.monotonic() - start
            time.sleep(0.2)
        views = "\n".join(node.cli("cluster", "nodes") for node in self.nodes[:1])
        raise AssertionError(f"the cluster did not heal within {timeout}s:\n{views}")

    def replica_of(self, primary: int) -> int:
        """Index of the node that replicates node ``primary``."""
        primary_id = self.nodes[primary].cli("cluster", "myid")
        for row in (line.split() for line in self.nodes[primary].cli("cluster", "nodes").splitlines()):
            if row[3] == primary_id:
                return self.ports.index(int(row[1].split("@")[0].rsplit(":", 1)[1]))
        raise AssertionError(f"node {primary} has no replica")

    def primary(self) -> int:
        """Index of a node that is a primary holding slots."""
        for i, node in enumerate(self.nodes):
            if any(
                "myself,master" in line and len(line.split()) > 8 for line in node.cli("cluster", "nodes").splitlines()
            ):
                return i
        raise AssertionError("no primary")


class Load:
    """Clients writing and reading through the cluster client; remembers each acknowledged write."""

    def __init__(self, cluster: Cluster, clients: int = 4):
        self.cluster = cluster
        self.acked: dict[str, tuple[str, float]] = {}
        self.errors: list[float] = []
        self.ops = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)]

    def _client(self) -> ValkeyCluster:
        nodes = [ClusterNode("127.0.0.1", port) for port in self.cluster.ports]
        return ValkeyCluster(startup_nodes=nodes, password=PASSWORD, socket_timeout=5, socket_connect_timeout=5)

    def _run(self, n: int) -> None:
        client = self._client()
        i = 0
        while not self._stop.is_set():
            key, value = f"load:{n}:{i}", str(i)
            try:
                client.set(key, value)
                with self._lock:
                    self.acked[key] = (value, time.monotonic())
                client.get(f"load:{n}:{i // 2}")
                with self._lock:
                    self.ops += 1
            except Exception:
                with self._lock:
                    self.errors.append(time.monotonic())
                time.sleep(0.05)
            i += 1
        client.close()

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def errors_since(self, moment: float) -> int:
        with self._lock:
            return sum(1 for at in self.errors if at >= moment)

    def lost(self, since: float = 0.0) -> list[str]:
        """Keys acknowledged at or after ``since`` that no longer read back their value."""
        with self._lock:
            written = [(key, value) for key, (value, at) in self.acked.items() if at >= since]
        client = self._client()
        try:
            return [key for key, value in written if client.get(key) != value.encode()]
        finally:
            client.close()
