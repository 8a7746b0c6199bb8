"""``build_patch`` and ``decide`` as pure functions: spec in, patch out, no server."""

from __future__ import annotations

import pytest

from agentcache_operator import names
from agentcache_operator.injector.admission import MalformedReview, decide, parse_review
from agentcache_operator.injector.patch import (
    SAFE_TO_EVICT_LOCAL_VOLUMES,
    SCRAPE_ANNOTATIONS,
    InjectionError,
    SidecarDefaults,
    build_patch,
    escape_pointer,
)

from .helpers import NAMESPACE, agentcache, apply, assert_wired, patch_of, pod, review, sidecar_of, validate_pod

DEFAULTS = SidecarDefaults(image="agentcache/sidecar:1.2.3")


def test_pod_without_labels_or_annotations_or_volumes():
    obj = pod()
    del obj["metadata"]["labels"]
    patched = apply(obj, build_patch(obj, agentcache(), NAMESPACE, DEFAULTS))
    validate_pod(patched)
    assert_wired(patched)
    assert patched["metadata"]["labels"] == {names.LABEL_INJECTED: "true"}


def test_label_and_annotation_keys_are_escaped_in_pointers():
    assert escape_pointer("agentcache.io/injected") == "agentcache.io~1injected"
    assert escape_pointer("a~b/c") == "a~0b~1c"
    ops = build_patch(pod(annotations={"x": "y"}), agentcache(), NAMESPACE, DEFAULTS)
    paths = {op["path"] for op in ops}
    assert "/metadata/labels/agentcache.io~1injected" in paths
    assert "/metadata/annotations/prometheus.io~1scrape" in paths


def test_injecting_twice_changes_nothing():
    obj = pod()
    once = apply(obj, build_patch(obj, agentcache(), NAMESPACE, DEFAULTS))
    assert build_patch(once, agentcache(), NAMESPACE, DEFAULTS) == []


def cache_with_hash(config_hash: str) -> dict:
    cache = agentcache()
    cache["status"]["configHash"] = config_hash
    return cache


@pytest.mark.parametrize(
    "annotations, kept",
    [
        (None, SCRAPE_ANNOTATIONS),
        ({}, SCRAPE_ANNOTATIONS),
        ({"team": "a"}, {"team": "a", **SCRAPE_ANNOTATIONS}),
        ({"prometheus.io/scrape": "false"}, {"prometheus.io/scrape": "false"}),
        ({names.ANNOTATION_CONFIG_HASH: "stale"}, SCRAPE_ANNOTATIONS),
    ],
)
def test_the_pod_records_the_config_hash_it_starts_with_once(annotations, kept):
    obj = pod(annotations=annotations)
    once = apply(obj, build_patch(obj, cache_with_hash("0123abcd"), NAMESPACE, DEFAULTS))
    validate_pod(once)
    assert once["metadata"]["annotations"] == {
        **kept,
        names.ANNOTATION_CONFIG_HASH: "0123abcd",
        SAFE_TO_EVICT_LOCAL_VOLUMES: names.SOCKET_VOLUME,
    }
    assert build_patch(once, cache_with_hash("ffff0000"), NAMESPACE, DEFAULTS) == []


def test_a_cache_not_yet_reconciled_gives_no_config_hash():
    patched = apply(pod(), build_patch(pod(), agentcache(), NAMESPACE, DEFAULTS))
    assert names.ANNOTATION_CONFIG_HASH not in patched["metadata"]["annotations"]


def test_existing_socket_variable_is_left_as_the_user_set_it():
    containers = [{"name": "agent", "image": "a", "env": [{"name": names.ENV_SOCKET, "value": "/custom.sock"}]}]
    patched = apply(
        pod(containers=containers), build_patch(pod(containers=containers), agentcache(), NAMESPACE, DEFAULTS)
    )
    validate_pod(patched)
    assert patched["spec"]["containers"][0]["env"] == containers[0]["env"]


def test_user_containers_mount_the_socket_read_only():
    obj = pod()
    patched = apply(obj, build_patch(obj, agentcache(), NAMESPACE, DEFAULTS))
    (mount,) = patched["spec"]["containers"][0]["volumeMounts"]
    assert mount["readOnly"] is True
    assert not any(m.get("readOnly") for m in sidecar_of(patched)["volumeMounts"] if m["name"] == names.SOCKET_VOLUME)


def test_default_image_is_the_injectors_when_the_cache_names_none():
    patched = apply(pod(), build_patch(pod(), agentcache(), NAMESPACE, DEFAULTS))
    assert sidecar_of(patched)["image"] == "agentcache/sidecar:1.2.3"


@pytest.mark.parametrize(
    "obj, fragment",
    [
        (pod(volumes=[{"name": names.SOCKET_VOLUME, "emptyDir": {}}]), "already has a volume named"),
        (
            pod(containers=[{"name": "agent", "image": "a", "ports": [{"containerPort": names.METRICS_PORT}]}]),
            "already uses port 9464",
        ),
        (
            pod(
                containers=[
                    {"name": "agent", "image": "a", "volumeMounts": [{"name": "x", "mountPath": names.SOCKET_DIR}]}
                ],
                volumes=[{"name": "x", "emptyDir": {}}],
            ),
            "where the cache socket goes",
        ),
        (pod(annotations={names.ANNOTATION_SIDECAR_LOG_LEVEL: "verbose"}), "is not one of debug, info, warning, error"),
        (pod(annotations={names.ANNOTATION_SIDECAR_CPU: "-1"}), "is not a Kubernetes quantity"),
        (
            pod(annotations={names.ANNOTATION_SIDECAR_MEMORY: "1Gi", names.ANNOTATION_SIDECAR_MEMORY_LIMIT: "512Mi"}),
            "memory request 1Gi is above its limit 512Mi",
        ),
    ],
)
def test_conflicts_are_clear_errors_not_broken_pods(obj, fragment):
    with pytest.raises(InjectionError, match=fragment):
        build_patch(obj, agentcache(), NAMESPACE, DEFAULTS)


def test_override_above_the_caches_limit_is_refused():
    cache = agentcache(backend="memory", sidecar={"resources": {"limits": {"cpu": "500m"}}})
    with pytest.raises(InjectionError, match="cpu request 2 is above its limit 500m"):
        build_patch(pod(annotations={names.ANNOTATION_SIDECAR_CPU: "2"}), cache, NAMESPACE, DEFAULTS)


def test_cache_of_another_namespace_is_never_wired():
    with pytest.raises(InjectionError, match="not in the pod's namespace"):
        build_patch(pod(), agentcache(namespace="elsewhere"), NAMESPACE, DEFAULTS)


def test_external_valkey_without_secret_gets_no_password_env():
    cache = agentcache(backend="valkey", valkey={"mode": "external", "url": "valkey://v:6379"})
    patched = apply(pod(), build_patch(pod(), cache, NAMESPACE, DEFAULTS))
    assert names.ENV_VALKEY_PASSWORD not in {e["name"] for e in sidecar_of(patched)["env"]}


def test_decide_is_pure_and_names_the_cache():
    request = parse_review(review(pod("missing")))
    answer = decide(request, [], DEFAULTS)
    assert answer["response"]["uid"] == request.uid
    assert "'missing'" in answer["response"]["status"]["message"]
    answer = decide(parse_review(review(pod())), [agentcache()], DEFAULTS)
    assert_wired(apply(pod(), patch_of(answer)))


def test_deleting_cache_is_refused():
    cache = agentcache()
    cache["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    answer = decide(parse_review(review(pod())), [cache], DEFAULTS)
    assert answer["response"]["allowed"] is False and "being deleted" in answer["response"]["status"]["message"]


def test_pod_without_the_label_passes_unchanged():
    answer = decide(parse_review(review(pod(cache=None))), [], DEFAULTS)
    assert answer["response"] == {"uid": answer["response"]["uid"], "allowed": True}


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": "u", "operation": "CREATE", "kind": {"kind": "Pod"}, "object": {"spec": {}}},
        },
    ],
)
def test_parse_review_rejects_what_it_cannot_answer(body):
    with pytest.raises(MalformedReview):
        parse_review(body)


@pytest.mark.parametrize(("version", "allowed"), [((1, 28), False), ((1, 29), True), ((1, 35), True), (None, True)])
def test_a_cluster_without_native_sidecars_is_told_so_instead_of_a_confusing_api_error(version, allowed):
    from dataclasses import replace

    from agentcache_operator.injector.admission import decide, parse_review

    from .helpers import review

    answer = decide(parse_review(review(pod())), [agentcache()], replace(DEFAULTS, kubernetes_version=version))
    assert answer["response"]["allowed"] is allowed
    if not allowed:
        assert "Kubernetes 1.28" in answer["response"]["status"]["message"]
        assert "needs Kubernetes 1.29 or newer" in answer["response"]["status"]["message"]
