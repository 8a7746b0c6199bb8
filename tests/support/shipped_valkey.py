"""valkey-server started the way a managed Valkey pod starts it: the rendered start.sh and valkey.conf.

Only what one machine cannot share is rewritten in valkey.conf: ``port``, ``bind`` and ``dir``;
for cluster nodes also the nodes.conf path, an explicit bus port, and ``cluster-preferred-endpoint-type
ip`` (pod hostnames do not resolve here, so clients must be sent to IPs). Every script of the
ConfigMap is written beside start.sh, as in the pod's /etc/valkey; ``script`` names the one the
container runs (start.sh, or sentinel.sh for a sentinel).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from .process import Launched, free_port
from .tools import require_tool

SIDECAR_PASSWORD = "sidecar-test-password"
COMMAND_TIMEOUT = 30
"""Generous: a shared CI machine can starve a valkey-cli for seconds."""


class ShippedValkey(Launched):
    def __init__(
        self,
        workdir: Path,
        data: dict[str, str],
        env: dict[str, str],
        port: int | None = None,
        script: str = "start.sh",
    ):
        super().__init__(script, workdir / "log")
        self.port = port or free_port()
        self.script = script
        self.workdir = workdir
        self.data = data
        self.env = env

    def start(self) -> ShippedValkey:
        self.workdir.mkdir(parents=True, exist_ok=True)
        local = {
            "port": f"port {self.port}",
            "bind": "bind 127.0.0.1",
            "dir": f"dir {self.workdir}",
            "cluster-config-file": f"cluster-config-file {self.workdir}/nodes.conf",
            "cluster-preferred-endpoint-type": "cluster-preferred-endpoint-type ip",
        }
        lines = [local.get(line.split()[0], line) for line in self.data["valkey.conf"].splitlines()]
        if "cluster-enabled yes" in lines:
            lines.append(f"cluster-port {free_port()}")
        conf = self.workdir / "valkey.conf"
        conf.write_text("\n".join(lines) + "\n")
        for name, text in self.data.items():  # the scripts, and sidecar.acl (the sidecars' ACL user)
            if name != "valkey.conf":
                (self.workdir / name).write_text(text)
        server_dir = str(Path(require_tool("valkey-server")).parent)
        env = {
            "PATH": f"{server_dir}:{os.environ['PATH']}",
            "VALKEY_CONFIG": str(conf),
            "VALKEY_PORT": str(self.port),
            "VALKEY_SIDECAR_PASSWORD": SIDECAR_PASSWORD,  # a pod gets it from the Secret's sidecar-password
        }
        self.launch(["sh", str(self.workdir / self.script)], lambda: True, env={**env, **self.env})
        return self

    @property
    def password(self) -> str:
        return self.env["VALKEY_PASSWORD"]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cli(self, *args: str, auth: bool = True) -> str:
        env = {**os.environ, **({"REDISCLI_AUTH": self.password} if auth else {})}
        result = subprocess.run(
            [require_tool("valkey-cli"), "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=COMMAND_TIMEOUT,
        )
        return result.stdout.strip()

    def probe(self, script: str = "ready.sh") -> bool:
        """Runs a script of the ConfigMap against this server, as the kubelet runs a probe or hook:
        one that does not finish within ``COMMAND_TIMEOUT`` has failed."""
        server_dir = str(Path(require_tool("valkey-cli")).parent)
        env = {**os.environ, "PATH": f"{server_dir}:{os.environ['PATH']}", "VALKEY_PORT": str(self.port), **self.env}
        try:
            return (
                subprocess.run(
                    ["sh", str(self.workdir / script)], env=env, capture_output=True, timeout=COMMAND_TIMEOUT
                ).returncode
                == 0
            )
        except subprocess.TimeoutExpired:
            return False

    def wait(self, predicate, what: str, timeout: float = 10) -> float:
        """Seconds until ``predicate()`` held; fails after ``timeout``."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if predicate():
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"valkey on port {self.port}: timed out after {timeout}s waiting for {what}")
