"""The CRD's schema and CEL rules, enforced by the real API server through ``kubectl apply``.

Each bad AgentCache is refused with the rule's own message; transition rules (those
using ``oldSelf``) are shown on an update of a stored object. The examples are accepted.
"""

from __future__ import annotations

import uuid

import pytest
import yaml

from .examples import EXAMPLE_FILES, agent_cache
from .test_e2e import install_crd


@pytest.fixture(scope="module")
def api(kube):
    install_crd(kube)
    return kube


def manifest(name: str, spec: dict) -> str:
    return yaml.safe_dump(
        {"apiVersion": "agentcache.io/v1alpha1", "kind": "AgentCache", "metadata": {"name": name}, "spec": spec}
    )


def apply(kube, namespace: str, name: str, spec: dict, check: bool = False):
    return kube.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=manifest(name, spec), check=check)


def _valkey(**fields):
    return {"backend": "valkey", "valkey": fields}


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_every_example_is_accepted_and_reapplied(api, kube_namespace, path):
    body = agent_cache(path)
    for _ in range(2):
        apply(api, kube_namespace, body["metadata"]["name"], body["spec"], check=True)


BAD = [
    (_valkey(mode="external"), "valkey.url is required when valkey.mode is external"),
    (_valkey(url="valkey://x:6379"), "valkey.url is only allowed with valkey.mode: external"),
    (
        _valkey(passwordSecretRef={"name": "s"}),
        "valkey.passwordSecretRef.name is only allowed with valkey.mode: external",
    ),
    (_valkey(topology="cluster", shards=2), "a Valkey cluster needs valkey.shards >= 3"),
    (_valkey(topology="replicated", replicas=0), "valkey.topology: replicated needs valkey.replicas >= 1"),
    (_valkey(topology="cluster", db=2), "a Valkey cluster only has db 0"),
    (
        _valkey(mode="external", url="valkey://x", topology="replicated"),
        "valkey.topology: replicated is only for a managed Valkey",
    ),
    ({"backend": "memory", "valkey": {}}, "spec.valkey is only allowed with backend: valkey"),
    ({"backend": "valkey", "file": {}}, "spec.file is only allowed with backend: file"),
    ({"backend": "redis"}, 'spec.backend: Unsupported value: "redis"'),
    ({"backend": "memory", "defaultTTL": -1}, "spec.defaultTTL: Invalid value: -1"),
]


@pytest.mark.parametrize(("spec", "message"), BAD, ids=[m for _, m in BAD])
def test_a_spec_breaking_an_invariant_is_refused_with_its_message(api, kube_namespace, spec, message):
    result = apply(api, kube_namespace, "bad", spec)
    assert result.returncode != 0 and message in result.stderr, result.stderr


NAMES = [
    ("a" * 38, "metadata.name must be at most 37 characters"),
    ("llm.cache", "metadata.name must start with a letter"),
    ("1cache", "metadata.name must start with a letter"),
]


@pytest.mark.parametrize(("name", "message"), NAMES, ids=[n for n, _ in NAMES])
def test_a_name_that_cannot_name_every_child_is_refused(api, kube_namespace, name, message):
    result = apply(api, kube_namespace, name, {"backend": "memory"})
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_the_longest_allowed_name_is_accepted(api, kube_namespace):
    apply(api, kube_namespace, "a" * 37, {"backend": "memory"}, check=True)


TRANSITIONS = [
    (
        _valkey(persistence={"enabled": True, "size": "2Gi"}),
        _valkey(persistence={"enabled": True, "size": "1Gi"}),
        "valkey.persistence.size may only grow",
    ),
    (
        _valkey(persistence={"enabled": True, "size": "1Gi"}),
        _valkey(persistence={"enabled": True, "size": "1000M"}),
        "valkey.persistence.size may only grow",
    ),
    (
        _valkey(persistence={"enabled": False}),
        _valkey(persistence={"enabled": True}),
        "valkey.persistence.enabled cannot change",
    ),
    (_valkey(topology="standalone"), _valkey(topology="replicated"), "valkey.mode and valkey.topology cannot change"),
    (_valkey(topology="cluster", shards=3), _valkey(topology="cluster", shards=4), "resharding is not supported"),
]


@pytest.mark.parametrize(("old", "new", "message"), TRANSITIONS, ids=[m for *_, m in TRANSITIONS])
def test_an_update_breaking_a_transition_rule_is_refused_with_its_message(api, kube_namespace, old, new, message):
    name = f"c-{uuid.uuid4().hex[:6]}"
    apply(api, kube_namespace, name, old, check=True)
    result = apply(api, kube_namespace, name, new)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_growing_the_volume_is_allowed(api, kube_namespace):
    apply(api, kube_namespace, "grows", _valkey(persistence={"enabled": True, "size": "1Gi"}), check=True)
    apply(api, kube_namespace, "grows", _valkey(persistence={"enabled": True, "size": "2Gi"}), check=True)
