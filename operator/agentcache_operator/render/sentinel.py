"""The three sentinels of a ``replicated`` cache: a StatefulSet and its headless Service.

A StatefulSet rather than a Deployment: each sentinel gets a stable DNS name
(``<cache>-sentinel-<i>.<cache>-sentinel``), which the sidecars, the Valkey pods and the
sentinels themselves list. The sentinels run the cache's Valkey image in sentinel mode
(sentinel.sh) and monitor the primary as ``<cache>``; they carry the Valkey pods' component
label, so the NetworkPolicy and the PodDisruptionBudget cover them too (at most one of the
cache's pods, sentinels included, is disrupted at a time).
"""

from __future__ import annotations

from typing import Any

from .. import names
from .common import (
    Cache,
    config_hash,
    container_security_context,
    labels,
    metadata,
    pod_security_context,
    selector_labels,
    spread_over_nodes,
)
from .tenancy import acl_user
from .valkey import (
    COMPONENT,
    CONFIG_DIR,
    PASSWORD_ENV,
    ROLE_LABEL,
    SENTINEL_PORT,
    SENTINELS,
    SIDECAR_PASSWORD_ENV,
    SIDECAR_PASSWORD_KEY,
    VALKEY_UID,
    _password_env,
    config_data,
    config_name,
    headless_name,
    image,
    sentinel_addresses,
    sentinel_name,
)

ROLE = "sentinel"


def _service(cache: Cache) -> dict[str, Any]:
    ports = [{"name": "sentinel", "port": SENTINEL_PORT, "targetPort": "sentinel", "protocol": "TCP"}]
    spec = {
        "clusterIP": "None",
        "publishNotReadyAddresses": True,
        "ports": ports,
        "selector": {**selector_labels(cache, COMPONENT), ROLE_LABEL: ROLE},
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cache, sentinel_name(cache.name), COMPONENT),
        "spec": spec,
    }


def _statefulset(cache: Cache, password: str) -> dict[str, Any]:
    name = sentinel_name(cache.name)
    first_primary = f"{names.valkey_name(cache.name)}-0.{headless_name(cache.name)}.{cache.namespace}.svc"
    env = [
        _password_env(cache, PASSWORD_ENV),
        # the sidecars ask the sentinels where the primary is as their own ACL user, never as admin
        _password_env(cache, SIDECAR_PASSWORD_ENV, SIDECAR_PASSWORD_KEY),
        {"name": "SENTINEL_CLIENT_USER", "value": acl_user(cache)},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "SENTINEL_ANNOUNCE", "value": f"$(POD_NAME).{name}.{cache.namespace}.svc"},
        {"name": "VALKEY_PRIMARY", "value": f"{first_primary}:{names.VALKEY_PORT}"},
        {"name": "VALKEY_MASTER_NAME", "value": cache.name},
        {"name": "VALKEY_SENTINELS", "value": " ".join(sentinel_addresses(cache))},
    ]
    probe = {"tcpSocket": {"port": "sentinel"}, "periodSeconds": 5}
    container = {
        "name": "sentinel",
        "image": image(cache),
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", f"{CONFIG_DIR}/sentinel.sh"],
        "env": env,
        "ports": [{"name": "sentinel", "containerPort": SENTINEL_PORT, "protocol": "TCP"}],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "initialDelaySeconds": 10, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "data", "mountPath": "/data"},
        ],
    }
    selector = {**selector_labels(cache, COMPONENT), ROLE_LABEL: ROLE}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(cache, name, COMPONENT),
        "spec": {
            "serviceName": name,
            "replicas": SENTINELS,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": {**labels(cache, COMPONENT), ROLE_LABEL: ROLE},
                    "annotations": {names.ANNOTATION_CONFIG_HASH: config_hash([config_data(cache), password])},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {**pod_security_context(VALKEY_UID), "fsGroupChangePolicy": "OnRootMismatch"},
                    # a quorum that one node's loss cannot take
                    "affinity": spread_over_nodes(selector),
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": config_name(cache.name), "defaultMode": 0o444}},
                        {"name": "data", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def render_sentinels(cache: Cache, password: str) -> list[dict[str, Any]]:
    """The sentinels' headless Service and StatefulSet (topology replicated only)."""
    return [_service(cache), _statefulset(cache, password)]
