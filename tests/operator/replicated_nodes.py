"""A replicated cache as the operator renders it, on local processes: a primary, two replicas and
three sentinels, each running the shipped scripts (start.sh with follow.sh, sentinel.sh)."""

from __future__ import annotations

import valkey

from agentcache_operator.render import Cache
from agentcache_operator.render.tenancy import acl_user
from agentcache_operator.render.valkey import config_data
from tests.support.process import free_port
from tests.support.shipped_valkey import SIDECAR_PASSWORD, ShippedValkey

PASSWORD = "sentinel-test-password"
NAME = "replicated-cache"


class Replicated:
    """A primary, two replicas and three sentinels, as the operator renders them."""

    def __init__(self, root):
        body = {
            "metadata": {"name": NAME, "namespace": "agents"},
            "spec": {"backend": "valkey", "valkey": {"topology": "replicated", "replicas": 2}},
        }
        self.root = root
        self.cache = Cache.from_body(body)
        self.data = config_data(self.cache)
        self.ports = [free_port() for _ in range(3)]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.generation = 0
        sentinels = " ".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        self.env = {
            "VALKEY_PASSWORD": PASSWORD,
            "VALKEY_MASTER_NAME": NAME,
            "VALKEY_SENTINELS": sentinels,
            "VALKEY_REPLICA_ANNOUNCE": "127.0.0.1",
            "SENTINEL_CLIENT_USER": acl_user(self.cache),
        }
        self.nodes = [self._node(i) for i in range(3)]
        self.sentinels = [
            ShippedValkey(
                root / f"sentinel{i}",
                self.data,
                {
                    **self.env,
                    "VALKEY_PRIMARY": f"127.0.0.1:{self.ports[0]}",
                    "SENTINEL_PORT": str(port),
                    "SENTINEL_DIR": str(root / f"sentinel{i}"),
                    "SENTINEL_ANNOUNCE": "127.0.0.1",
                },
                port=port,
                script="sentinel.sh",
            )
            for i, port in enumerate(self.sentinel_ports)
        ]

    def _node(self, i: int) -> ShippedValkey:
        env = {**self.env, **({"VALKEY_PRIMARY": f"127.0.0.1:{self.ports[0]}"} if i else {})}
        return ShippedValkey(self.root / f"valkey{i}-{self.generation}", self.data, env, port=self.ports[i])

    def start(self) -> Replicated:
        for node in self.nodes:
            node.start()
        for node in self.nodes[1:]:
            node.wait(lambda n=node: "master_link_status:up" in n.cli("info", "replication"), "replication")
        for sentinel in self.sentinels:
            sentinel.start()
        for sentinel in self.sentinels:
            sentinel.wait(
                lambda s=sentinel: self._watching(s), "the sentinel to know every replica and sentinel", timeout=30
            )
        return self

    @staticmethod
    def _watching(sentinel: ShippedValkey) -> bool:
        fields = sentinel.cli("sentinel", "master", NAME).splitlines()
        info = dict(zip(fields[::2], fields[1::2]))
        return info.get("num-slaves") == "2" and info.get("num-other-sentinels") == "2"

    def primary_port(self) -> int | None:
        """The primary's port as a sentinel names it."""
        answer = self.sentinels[0].cli("sentinel", "get-master-addr-by-name", NAME).split()
        return int(answer[1]) if len(answer) == 2 else None

    def restart_empty(self, i: int) -> ShippedValkey:
        self.nodes[i].stop()
        self.generation += 1
        self.nodes[i] = self._node(i).start()
        return self.nodes[i]

    def client(self, port: int) -> valkey.Valkey:
        return valkey.Valkey(host="127.0.0.1", port=port, password=PASSWORD)

    def stop(self) -> None:
        for process in [*self.sentinels, *self.nodes]:
            process.stop()


def sidecar_config(group: Replicated) -> dict:
    """The operator's sidecar config of a replicated cache, with local addresses."""
    sentinel = {"master_name": NAME, "addresses": [f"127.0.0.1:{port}" for port in group.sentinel_ports]}
    return {
        "cache": {"backend": "valkey", "key_prefix": group.cache.key_prefix},
        "services": {
            "valkey": {
                "config": {  # as rendered: the sidecars' ACL user, for Valkey and the sentinels alike
                    "url": f"valkey://127.0.0.1:{group.ports[0]}",
                    "username": acl_user(group.cache),
                    "password": SIDECAR_PASSWORD,
                    "socket_timeout": 0.5,
                    "socket_connect_timeout": 0.3,
                    "sentinel": sentinel,
                }
            }
        },
        "sidecar": {"fallback": "memory"},
    }
