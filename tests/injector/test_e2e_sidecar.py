"""End to end: the injector's patch, the operator's ConfigMap, and the real sidecar serving the agent's socket.

The pod is patched by the running injector (over HTTPS), its ConfigMap and
password Secret are rendered by the operator's renderers, and the sidecar
container's own command is run (tests/injector/podrun.py stands in for the
kubelet: volumes are directories, mount paths are translated, the metrics port is
a free one and the managed Valkey's Service name resolves to a real
valkey-server). The agent container's AGENTCACHE_SOCKET must then answer.
"""

from __future__ import annotations

import secrets
import socket
import time

import aiohttp
import pytest
import valkey as valkey_client

from agentcache import protocol
from agentcache_operator import names
from agentcache_operator.render.common import Cache
from agentcache_operator.render.sidecar_config import render_config_map
from agentcache_operator.render.valkey import SIDECAR_ACL_FILE, config_data, render_password_secret, sidecar_password
from tests.support.process import free_port
from tests.support.valkey import ValkeyProcess

from .helpers import NAMESPACE, agentcache, apply, patch_of, pod, review, sidecar_of, validate_pod
from .podrun import PodSandbox

pytestmark = pytest.mark.e2e


def wait_for_socket(path: str, process, log, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the sidecar exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(path)
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"no socket at {path}:\n{log.read_text()}")


async def run_pod(post, tmp_path, cache: dict, secrets_by_name: dict, valkey_url: str | None = None):
    """Inject, start the sidecar container, and answer (sandbox, agent socket path, metrics port, process)."""
    original = pod(cache["metadata"]["name"])
    status, answer = await post(review(original))
    assert status == 200 and answer["response"]["allowed"], answer
    patched = apply(original, patch_of(answer))
    validate_pod(patched)
    config_map = render_config_map(Cache.from_body(cache))
    sandbox = PodSandbox(patched, tmp_path / "pod", {config_map["metadata"]["name"]: config_map}, secrets_by_name)
    sidecar = sidecar_of(patched)
    config_file = sandbox.volume_dirs[names.CONFIG_VOLUME] / names.CONFIG_FILE_KEY
    metrics_port = free_port()  # the pod's own network namespace is not available here
    overrides = {"sidecar": {"metrics_port": metrics_port}}
    if valkey_url:  # the managed Valkey's Service name, resolved to the real server
        overrides["services.valkey.config"] = {"url": valkey_url}
    sandbox.translate_config(sidecar, config_file, overrides)
    log = tmp_path / "sidecar.log"
    process = sandbox.start(names.SIDECAR_CONTAINER, log)
    agent = sandbox.container("agent")
    agent_socket = sandbox.environment(agent)[protocol.ENV_SOCKET]
    wait_for_socket(agent_socket, process, log)
    return sandbox, agent_socket, metrics_port, process


async def check_pod(agent_socket: str, metrics_port: int, sidecar: dict) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=agent_socket)) as agent:
        async with agent.get("http://pod/healthz") as reply:
            assert reply.status == 200
        async with agent.put("http://pod/v1/keys/answer", data=b"42", headers={"Content-Type": "text/plain"}) as reply:
            assert reply.status == 204
        async with agent.get("http://pod/v1/keys/answer") as reply:
            assert reply.status == 200 and await reply.read() == b"42"
    probe = sidecar["startupProbe"]["httpGet"]
    async with aiohttp.ClientSession() as kubelet:  # the probes the kubelet would send, on the metrics port
        for path in (probe["path"], sidecar["livenessProbe"]["httpGet"]["path"]):
            async with kubelet.get(f"http://127.0.0.1:{metrics_port}{path}") as reply:
                assert reply.status == 200, path


async def test_memory_backend_pod_serves_the_agents_socket(post, tmp_path):
    cache = agentcache("llm-cache", backend="memory")
    sandbox, agent_socket, metrics_port, process = await run_pod(post, tmp_path, cache, {})
    try:
        await check_pod(agent_socket, metrics_port, sandbox.container(names.SIDECAR_CONTAINER))
    finally:
        process.kill()
        process.wait(10)


async def test_managed_valkey_pod_serves_the_agents_socket_with_the_secrets_password(post, tmp_path):
    password = secrets.token_urlsafe(16)
    valkey = ValkeyProcess(tmp_path / "valkey").start()
    cache = agentcache("valkey-cache", backend="valkey", valkey={"mode": "managed"})
    client = valkey_client.Valkey(host="127.0.0.1", port=valkey.port)
    sidecar_user = config_data(Cache.from_body(cache))[SIDECAR_ACL_FILE].split()  # as start.sh makes it
    client.execute_command("ACL", "SETUSER", *sidecar_user, ">" + sidecar_password(password, Cache.from_body(cache)))
    client.config_set("requirepass", password)  # after start: the readiness PING is unauthenticated
    client.close()
    secret = render_password_secret(Cache.from_body(cache), password)
    process = None
    try:
        sandbox, agent_socket, metrics_port, process = await run_pod(
            post, tmp_path, cache, {secret["metadata"]["name"]: secret}, valkey_url=valkey.url
        )
        await check_pod(agent_socket, metrics_port, sandbox.container(names.SIDECAR_CONTAINER))
        client = valkey_client.Valkey(host="127.0.0.1", port=valkey.port, password=password)
        try:  # the value is in the real server, under the cache's prefix
            keys = client.keys(f"{names.default_key_prefix(NAMESPACE, 'valkey-cache')}*")
            assert any(key.decode().endswith("answer") for key in keys), keys
        finally:
            client.close()
    finally:
        if process is not None:
            process.kill()
            process.wait(10)
        valkey.stop()
