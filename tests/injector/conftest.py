"""A running ``agentcache-injector`` (real subprocess, HTTPS with a CA it generated) and a TLS client for it."""

from __future__ import annotations

import aiohttp
import pytest
import yaml

from agentcache_operator import names

from .helpers import InjectorProcess, agentcache, client_ssl_context

CACHES = [
    agentcache("llm-cache", backend="memory"),
    agentcache("valkey-cache", backend="valkey", valkey={"mode": "managed"}),
    agentcache(
        "ext-cache",
        backend="valkey",
        valkey={
            "mode": "external",
            "url": "valkey://valkey.example:6379",
            "passwordSecretRef": {"name": "ext-valkey", "key": "secret"},
        },
    ),
    agentcache("file-cache", backend="file", file={"sizeLimit": "256Mi"}),
    agentcache(
        "custom-cache",
        backend="memory",
        sidecar={
            "image": "registry.example/agentcache/sidecar:9.9",
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": 1, "memory": "256Mi"}},
        },
    ),
    agentcache("pending-cache", phase="Pending"),
    agentcache("broken-cache", phase="Failed"),
    agentcache("secret-wait-cache", phase="Failed", reason=names.REASON_SECRET_NOT_USABLE),
    agentcache("private-cache", backend="memory", sidecar={"imagePullSecrets": [{"name": "cache-regcred"}]}),
    agentcache("team-b-cache", namespace="team-b"),
]


@pytest.fixture(scope="module")
def injector(tmp_path_factory):
    """The injector started with ``--tls-dir`` (it makes its own CA) and ``--caches`` (no API server)."""
    workdir = tmp_path_factory.mktemp("injector")
    caches_file = workdir / "caches.yaml"
    caches_file.write_text(yaml.safe_dump_all(CACHES))
    tls_dir = workdir / "tls"
    process = InjectorProcess(
        workdir,
        [
            "--tls-dir",
            str(tls_dir),
            "--caches",
            str(caches_file),
            "--sidecar-image",
            "agentcache/sidecar:test",
            "--sidecar-image-pull-secret",
            "org-regcred",
        ],
    )
    process.start()
    process.ca_file = tls_dir / "ca.crt"
    yield process
    process.stop()


@pytest.fixture
async def post(injector):
    """POST a body to the injector over verified TLS; returns (status, parsed JSON)."""
    context = client_ssl_context(injector.ca_file)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def send(body, path: str = "/mutate", raw: bool = False):
            kwargs = {"data": body} if raw else {"json": body}
            async with session.post(injector.url + path, ssl=context, server_hostname=injector.host, **kwargs) as reply:
                return reply.status, await reply.json(content_type=None)

        yield send
