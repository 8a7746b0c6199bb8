"""Real AdmissionReviews POSTed over verified HTTPS to the running ``agentcache-injector``.

The AgentCaches come from ``--caches`` (conftest.CACHES) instead of an API server;
the lookup against a Kubernetes API is tested in test_kube.py.
"""

from __future__ import annotations

import ssl

import aiohttp
import pytest

from agentcache import protocol
from agentcache_operator import names
from agentcache_operator.injector.patch import SAFE_TO_EVICT_LOCAL_VOLUMES as SAFE_TO_EVICT

from .helpers import NAMESPACE, apply, assert_wired, patch_of, pod, review, sidecar_of, validate_pod


async def inject(post, obj: dict, namespace: str = NAMESPACE) -> tuple[dict, dict]:
    status, answer = await post(review(obj, namespace))
    assert status == 200, answer
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    return answer["response"], apply(obj, patch_of(answer))


async def test_plain_pod_gets_the_sidecar(post):
    original = pod()
    response, patched = await inject(post, original)
    assert response["allowed"] is True
    validate_pod(patched)
    assert_wired(patched)
    sidecar = sidecar_of(patched)
    assert patched["spec"]["initContainers"][0] is sidecar
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == "agentcache/sidecar:test"  # the injector's --sidecar-image
    assert sidecar["command"] == ["agentcache-sidecar", "--config", names.CONFIG_PATH]
    # "the socket serves": never the backend's health, which must not take the agent out of its Service
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/healthz", "port": protocol.METRICS_PORT, "scheme": "HTTP"}
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar["resources"] == {
        "requests": {"cpu": "25m", "memory": "32Mi"},
        "limits": {"cpu": "1", "memory": "128Mi"},
    }, "a quota that requires them admits it"
    assert patched["metadata"]["annotations"][SAFE_TO_EVICT] == names.SOCKET_VOLUME
    assert patched["spec"]["imagePullSecrets"] == [{"name": "org-regcred"}]
    assert [p["containerPort"] for p in sidecar["ports"]] == [protocol.METRICS_PORT]
    security = sidecar["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in patched["spec"]["volumes"]}
    assert "emptyDir" in volumes[names.SOCKET_VOLUME]
    assert volumes[names.CONFIG_VOLUME]["configMap"]["name"] == names.config_map_name("llm-cache")
    assert {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}[names.CONFIG_VOLUME] == names.CONFIG_DIR
    assert patched["metadata"]["labels"][names.LABEL_INJECTED] == "true"
    assert patched["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(protocol.METRICS_PORT),
        "prometheus.io/path": "/metrics",
        SAFE_TO_EVICT: names.SOCKET_VOLUME,
    }
    assert not any(e["name"] == protocol.ENV_VALKEY_PASSWORD for e in sidecar["env"])  # memory backend
    assert patched["spec"]["containers"][0]["command"] == original["spec"]["containers"][0]["command"]


async def test_own_init_containers_and_sidecars_keep_order_and_content(post):
    own_init = [
        {
            "name": "migrate",
            "image": "busybox",
            "command": ["sh", "-c", "true"],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "env": [{"name": "A", "value": "1"}],
        },
        {"name": "log-shipper", "image": "fluent-bit", "restartPolicy": "Always"},
    ]
    containers = [
        {"name": "agent", "image": "agent:1", "env": [{"name": "B", "value": "2"}]},
        {"name": "helper", "image": "helper:1", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
    ]
    original = pod(
        init_containers=own_init,
        containers=containers,
        volumes=[{"name": "data", "emptyDir": {}}],
        annotations={"team": "ml"},
    )
    response, patched = await inject(post, original)
    validate_pod(patched)
    assert_wired(patched)
    assert [c["name"] for c in patched["spec"]["initContainers"]] == [names.SIDECAR_CONTAINER, "migrate", "log-shipper"]
    assert [c["name"] for c in patched["spec"]["containers"]] == ["agent", "helper"]
    for before, after in zip(
        [*own_init, *containers], [*patched["spec"]["initContainers"][1:], *patched["spec"]["containers"]]
    ):
        for key, value in before.items():  # everything the user wrote is still there, unchanged
            if key in ("env", "volumeMounts"):
                assert after[key][: len(value)] == value
            else:
                assert after[key] == value
    assert [v["name"] for v in patched["spec"]["volumes"]][0] == "data"
    assert patched["metadata"]["annotations"]["team"] == "ml"


async def test_already_injected_pod_is_left_alone(post):
    _, injected = await inject(post, pod())
    response, again = await inject(post, injected)
    assert response["allowed"] is True and "patch" not in response
    assert again == injected


async def test_overrides_by_annotation(post):
    annotations = {
        names.ANNOTATION_SIDECAR_CPU: "200m",
        names.ANNOTATION_SIDECAR_MEMORY: "96Mi",
        names.ANNOTATION_SIDECAR_CPU_LIMIT: "1",
        names.ANNOTATION_SIDECAR_MEMORY_LIMIT: "512Mi",
        names.ANNOTATION_SIDECAR_LOG_LEVEL: "DEBUG",
    }
    _, patched = await inject(post, pod("custom-cache", annotations=annotations))
    validate_pod(patched)
    sidecar = sidecar_of(patched)
    assert sidecar["resources"] == {
        "requests": {"cpu": "200m", "memory": "96Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }
    assert {"name": "AGENTCACHE_LOG_LEVEL", "value": "debug"} in sidecar["env"]
    assert sidecar["image"] == "registry.example/agentcache/sidecar:9.9"  # spec.sidecar.image wins


async def test_resources_come_from_the_agentcache(post):
    _, patched = await inject(post, pod("custom-cache"))
    assert sidecar_of(patched)["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    }


async def test_a_default_limit_never_falls_below_the_request(post):
    _, patched = await inject(post, pod(annotations={names.ANNOTATION_SIDECAR_MEMORY: "300Mi"}))
    assert sidecar_of(patched)["resources"]["limits"]["memory"] == "300Mi"


async def test_bad_override_is_refused_with_the_annotation_named(post):
    status, answer = await post(review(pod(annotations={names.ANNOTATION_SIDECAR_MEMORY: "lots"})))
    assert status == 200
    response = answer["response"]
    assert response["allowed"] is False
    assert (
        names.ANNOTATION_SIDECAR_MEMORY in response["status"]["message"] and "'lots'" in response["status"]["message"]
    )


async def test_user_scrape_annotations_are_kept(post):
    mine = {"prometheus.io/scrape": "true", "prometheus.io/port": "8000"}
    _, patched = await inject(post, pod(annotations=mine))
    assert patched["metadata"]["annotations"] == {**mine, SAFE_TO_EVICT: names.SOCKET_VOLUME}


@pytest.mark.parametrize(
    "cache, secret_ref",
    [
        (
            "valkey-cache",
            {"name": names.valkey_password_secret("valkey-cache"), "key": names.VALKEY_SIDECAR_PASSWORD_KEY},
        ),
        ("ext-cache", {"name": "ext-valkey", "key": "secret"}),
    ],
)
async def test_valkey_password_comes_from_the_secret(post, cache, secret_ref):
    _, patched = await inject(post, pod(cache))
    validate_pod(patched)
    env = {e["name"]: e for e in sidecar_of(patched)["env"]}
    assert env[protocol.ENV_VALKEY_PASSWORD]["valueFrom"]["secretKeyRef"] == secret_ref
    app_env = {e["name"] for e in patched["spec"]["containers"][0]["env"]}
    assert protocol.ENV_VALKEY_PASSWORD not in app_env  # only the sidecar sees the password


async def test_file_backend_gets_a_bounded_data_volume(post):
    _, patched = await inject(post, pod("file-cache"))
    validate_pod(patched)
    volumes = {v["name"]: v for v in patched["spec"]["volumes"]}
    assert volumes["agentcache-data"] == {"name": "agentcache-data", "emptyDir": {"sizeLimit": "256Mi"}}


async def test_pending_cache_is_injected_with_a_warning(post):
    response, patched = await inject(post, pod("pending-cache"))
    assert response["allowed"] is True
    assert any("Pending" in w for w in response["warnings"])
    assert_wired(patched)


async def test_unknown_cache_is_refused_by_name(post):
    status, answer = await post(review(pod("no-such-cache")))
    response = answer["response"]
    assert status == 200 and response["allowed"] is False
    assert "'no-such-cache'" in response["status"]["message"] and "'agents'" in response["status"]["message"]
    assert response["status"]["code"] == 404


async def test_a_cache_failed_for_a_missing_secret_still_gets_its_pods_with_a_warning(post):
    """Only a spec that can never work blocks agents; the pod starts once the Secret exists."""
    response, patched = await inject(post, pod("secret-wait-cache"))
    assert response["allowed"] is True and sidecar_of(patched)
    assert any("does not exist" in w for w in response["warnings"])


async def test_pull_secrets_of_the_cache_and_the_injector_join_the_pods_own(post):
    obj = pod("private-cache")
    obj["spec"]["imagePullSecrets"] = [{"name": "app-regcred"}, {"name": "org-regcred"}]
    _, patched = await inject(post, obj)
    assert patched["spec"]["imagePullSecrets"] == [
        {"name": "app-regcred"},
        {"name": "org-regcred"},
        {"name": "cache-regcred"},
    ]


async def test_evictable_local_volumes_the_pod_names_are_kept(post):
    _, patched = await inject(post, pod(annotations={SAFE_TO_EVICT: "scratch"}))
    assert patched["metadata"]["annotations"][SAFE_TO_EVICT] == f"scratch,{names.SOCKET_VOLUME}"


async def test_failed_cache_is_refused_with_its_reason(post):
    _, answer = await post(review(pod("broken-cache")))
    response = answer["response"]
    assert response["allowed"] is False
    assert "'broken-cache'" in response["status"]["message"]
    assert "names no host" in response["status"]["message"]


async def test_cache_of_another_namespace_is_refused(post):
    _, answer = await post(review(pod("team-b-cache")))
    message = answer["response"]["status"]["message"]
    assert answer["response"]["allowed"] is False
    assert "team-b" in message and "its own namespace" in message


async def test_pod_in_the_caches_namespace_gets_it(post):
    obj = pod("team-b-cache")
    obj["metadata"]["namespace"] = "team-b"
    response, patched = await inject(post, obj, namespace="team-b")
    assert response["allowed"] is True and patched["spec"]["initContainers"][0]["name"] == names.SIDECAR_CONTAINER


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"[1, 2, 3]",
        b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": ""}}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "1", '
        b'"operation": "CREATE", "kind": {"kind": "Pod"}, "object": "pod"}}',
        b"\xff\xfe\x00",
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", '
        b'"request": {"uid": "1", "namespace": "agents", '
        b'"operation": "CREATE", "kind": {"kind": "Pod"}, "object": {"metadata": {"labels": ["x"]}, "spec": {}}}}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", '
        b'"request": {"uid": "1", "namespace": "agents", '
        b'"operation": "CREATE", "kind": {"kind": "Pod"}, "object": {"metadata": {"labels": {"agentcache.io/cache": '
        b'"llm-cache"}}, "spec": {"containers": [{"name": "a", "env": "X=1"}]}}}}',
    ],
)
async def test_malformed_reviews_get_400_and_the_server_keeps_serving(post, body):
    status, answer = await post(body, raw=True)
    assert status == 400
    assert answer["error"] == "bad_request" and answer["message"]
    response, patched = await inject(post, pod())
    assert response["allowed"] is True and sidecar_of(patched)


async def test_other_operations_and_kinds_pass_unchanged(post):
    _, answer = await post(review(pod(), operation="UPDATE"))
    assert answer["response"]["allowed"] is True and "patch" not in answer["response"]


async def test_health_endpoints(injector):
    context = ssl.create_default_context(cafile=str(injector.ca_file))
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz"):
            async with session.get(injector.url + path, ssl=context, server_hostname=injector.host) as reply:
                assert reply.status == 200


async def test_certificate_is_not_trusted_without_the_ca(injector):
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(injector.url + "/healthz", server_hostname=injector.host)


async def test_oversized_body_is_refused_and_the_server_keeps_serving(post):
    status, answer = await post(b"{" + b" " * (5 * 1024 * 1024) + b"}", raw=True)
    assert status == 413 and answer["error"] == "too_large"
    response, _ = await inject(post, pod())
    assert response["allowed"] is True
