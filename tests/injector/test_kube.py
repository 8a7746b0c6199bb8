"""The injector against a real Kubernetes API (tests/support/k8s.py: the local control plane or $KUBECONFIG's cluster).

AgentCache lookups, the TLS Secret it creates once and reuses, rotation, the
caBundle it keeps in sync, and the running injector getting its caches from the
API. The webhook configuration created here uses failurePolicy Ignore and a
unique name, so it cannot disturb a real cluster; it is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import uuid
from pathlib import Path

import aiohttp
import pytest
import yaml

from agentcache_operator import names
from agentcache_operator.crd import CRD_FILE
from agentcache_operator.injector import certs
from agentcache_operator.injector.kubeapi import ApiCacheLookup, Credentials, KubeApi
from agentcache_operator.injector.tls import ManagedCertificates, SecretStore, WebhookCaBundle, utc_now
from agentcache_operator.injector.webhook import render_webhook_configuration

from .helpers import SERVICE, InjectorProcess, apply, assert_wired, client_ssl_context, patch_of, pod, review

CACHES = f"/apis/{names.GROUP}/{names.VERSION}"
MWC = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


@pytest.fixture(scope="module")
def crd(kube):
    """The AgentCache CRD from the chart, served by the API."""
    kube.api.request(
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        yaml.safe_load(CRD_FILE.read_text()),
        check=False,
    )
    kube.api.wait_for(f"{CACHES}/{names.PLURAL}", lambda obj: obj is not None, what="the AgentCache CRD")
    return kube


def create_cache(kube, namespace: str, name: str, phase: str | None = None, message: str = "", **spec) -> dict:
    body = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec or {"backend": "memory"},
    }
    path = f"{CACHES}/namespaces/{namespace}/{names.PLURAL}"
    created = kube.api.create(path, body)
    if phase:
        status = {
            "phase": phase,
            "conditions": [
                {
                    "type": "Ready",
                    "status": str(phase == "Ready"),
                    "reason": names.REASON_INVALID_SPEC if phase == "Failed" else phase,
                    "message": message or phase,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
        created = kube.api.patch(f"{path}/{name}/status", {"status": status})
    return created


@pytest.fixture
def webhook_configuration(kube, kube_namespace):
    name = f"agentcache-test-{uuid.uuid4().hex[:8]}"
    kube.api.create(MWC, render_webhook_configuration(name, kube_namespace, SERVICE, None, failure_policy="Ignore"))
    yield name
    kube.api.request("DELETE", f"{MWC}/{name}", check=False)


@pytest.fixture
async def api(kube):
    client = KubeApi(Credentials.from_kubeconfig(str(kube.kubeconfig)))
    yield client
    await client.close()


async def test_lookup_lists_once_and_refreshes_when_a_cache_is_missing(crd, kube_namespace, api):
    create_cache(crd, kube_namespace, "first")
    now = [0.0]
    lookup = ApiCacheLookup(api, ttl=30, min_refresh=0.5, clock=lambda: now[0])
    (found,) = [
        c for c in await lookup.caches_named("first", kube_namespace) if c["metadata"]["namespace"] == kube_namespace
    ]
    assert found["spec"]["backend"] == "memory"
    assert await lookup.caches_named("first", kube_namespace) and lookup.lists == 1  # the snapshot is reused
    create_cache(crd, kube_namespace, "late")
    now[0] += 1.0  # older than min_refresh, younger than ttl
    late = await lookup.caches_named("late", kube_namespace)
    assert [c["metadata"]["namespace"] for c in late] == [kube_namespace] and lookup.lists == 2
    assert await lookup.caches_named("never", kube_namespace) == [] and lookup.lists == 2  # no LIST storm


async def test_injector_creates_its_secret_syncs_the_ca_bundle_and_injects(
    crd, kube_namespace, webhook_configuration, tmp_path
):
    create_cache(crd, kube_namespace, "llm-cache", phase="Ready")
    create_cache(crd, kube_namespace, "broken", phase="Failed", message="the valkey StatefulSet cannot be created")
    args = [
        "--kubeconfig",
        str(crd.kubeconfig),
        "--tls-secret",
        "injector-tls",
        "--webhook-configuration",
        webhook_configuration,
        "--cache-ttl",
        "0",
    ]
    first = InjectorProcess(tmp_path / "a", args, namespace=kube_namespace)
    (tmp_path / "a").mkdir()
    first.start()
    try:
        secret = crd.api.get(f"/api/v1/namespaces/{kube_namespace}/secrets/injector-tls")
        assert secret["type"] == "kubernetes.io/tls" and {"tls.crt", "tls.key", "ca.crt", "ca.key"} <= set(
            secret["data"]
        )
        ca_bundle = crd.api.get(f"{MWC}/{webhook_configuration}")["webhooks"][0]["clientConfig"]["caBundle"]
        assert ca_bundle == secret["data"]["ca.crt"]
        ca_file = tmp_path / "ca-bundle.pem"  # what the API server trusts: the caBundle
        ca_file.write_bytes(base64.b64decode(ca_bundle))
        served = first.peer_certificate(ca_file)

        (tmp_path / "b").mkdir()
        second = InjectorProcess(tmp_path / "b", args, namespace=kube_namespace).start()  # another replica
        try:
            assert second.peer_certificate(ca_file) == served  # it reused the Secret
            again = crd.api.get(f"/api/v1/namespaces/{kube_namespace}/secrets/injector-tls")
            assert again["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]
        finally:
            second.stop()

        async with aiohttp.ClientSession() as session:

            async def post(obj):
                async with session.post(
                    first.url + "/mutate",
                    json=review(obj, kube_namespace),
                    ssl=client_ssl_context(ca_file),
                    server_hostname=first.host,
                ) as reply:
                    assert reply.status == 200
                    return await reply.json()

            target = pod("llm-cache")
            target["metadata"]["namespace"] = kube_namespace
            answer = await post(target)
            assert answer["response"]["allowed"] is True
            assert_wired(apply(target, patch_of(answer)))
            refused = await post(pod("broken"))
            assert refused["response"]["allowed"] is False
            assert "the valkey StatefulSet cannot be created" in refused["response"]["status"]["message"]
            create_cache(crd, kube_namespace, "created-later")
            assert (await post(pod("created-later")))["response"]["allowed"] is True
    finally:
        first.stop()


async def test_rotation_keeps_the_ca_then_replaces_it_with_an_overlap(crd, kube_namespace, webhook_configuration, api):
    dns = certs.service_dns_names(SERVICE, kube_namespace)
    path = f"/api/v1/namespaces/{kube_namespace}/secrets/rotating-tls"

    def manager(days_later: float) -> ManagedCertificates:
        return ManagedCertificates(
            SecretStore(api, kube_namespace, "rotating-tls"),
            dns,
            WebhookCaBundle(api, webhook_configuration),
            clock=lambda: utc_now() + dt.timedelta(days=days_later),
        )

    def ca_bundle() -> bytes:
        return base64.b64decode(
            crd.api.get(f"{MWC}/{webhook_configuration}")["webhooks"][0]["clientConfig"]["caBundle"]
        )

    cert, _ = await manager(0).load()
    first = crd.api.get(path)
    original_ca = base64.b64decode(first["data"]["ca.crt"])
    assert ca_bundle() == original_ca

    renewed, _ = await manager(340).load()  # < 30 days left on the serving certificate
    assert renewed != cert
    assert base64.b64decode(crd.api.get(path)["data"]["tls.crt"]) == renewed
    assert ca_bundle() == original_ca  # same CA: nothing for the API server to relearn

    await manager(certs.CA_DAYS - 100).load()  # the CA itself is about to expire
    stored = certs.CertBundle.from_secret(crd.api.get(path))
    assert stored.ca_cert != original_ca and stored.previous_ca == original_ca
    assert ca_bundle() == stored.ca_cert + original_ca  # both trusted during the change


async def test_replicas_racing_on_an_empty_secret_agree_on_one_certificate(crd, kube_namespace):
    dns = certs.service_dns_names(SERVICE, kube_namespace)
    clients = [KubeApi(Credentials.from_kubeconfig(str(crd.kubeconfig))) for _ in range(3)]
    try:
        served = await asyncio.gather(
            *[ManagedCertificates(SecretStore(client, kube_namespace, "raced-tls"), dns).load() for client in clients]
        )
    finally:
        for client in clients:
            await client.close()
    stored = crd.api.get(f"/api/v1/namespaces/{kube_namespace}/secrets/raced-tls")
    assert {cert for cert, _ in served} == {base64.b64decode(stored["data"]["tls.crt"])}


def test_missing_kubeconfig_is_a_clear_error(tmp_path: Path):
    from agentcache_operator.injector.main import main

    assert main(["--tls-dir", str(tmp_path / "tls"), "--kubeconfig", str(tmp_path / "absent")]) == 1


async def test_the_server_version_is_read_for_the_native_sidecar_check(api):
    from agentcache_operator.injector.kubeapi import server_version

    major, minor = await server_version(api)
    assert major == 1 and minor >= 29
