"""Children of a managed Valkey: password Secret, config, Services, StatefulSets, PDB, NetworkPolicy.

Topologies:
- standalone: StatefulSet ``<cache>-valkey`` of one pod.
- replicated: that primary plus StatefulSet ``<cache>-valkey-replica`` of ``replicas`` pods
  started with ``replicaof``; Service ``<cache>-valkey`` selects the primary and
  ``<cache>-valkey-replicas`` the replicas. Three sentinels (sentinel.py) fail the primary over;
  every pod takes its role from them when they answer (follow.sh), and so does the sidecar.
  The primary Service follows the first pod's label, not a failover.
- cluster: StatefulSet ``<cache>-valkey`` of ``shards * (1 + replicasPerShard)`` pods with
  ``cluster-enabled`` and Job ``<cache>-valkey-bootstrap`` that forms the cluster once; then
  every pod keeps it whole itself (heal.sh on start, handover.sh in preStop).
Every topology also gets the headless Service ``<cache>-valkey-headless`` (stable pod DNS).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

from .. import names
from .cluster import BOOTSTRAP_SCRIPT
from .common import (
    Cache,
    config_hash,
    container_security_context,
    labels,
    mebibytes,
    metadata,
    pod_security_context,
    quantity_bytes,
    script,
    selector_labels,
    spread_over_nodes,
)
from .tenancy import acl_rule, acl_user

COMPONENT = "valkey"
BOOTSTRAP_COMPONENT = "valkey-bootstrap"
ROLE_LABEL = "agentcache.io/valkey-role"
VALKEY_UID = 999  # the valkey user of the official image
CLUSTER_BUS_PORT = 16379
CONFIG_DIR = "/etc/valkey"
DATA_DIR = "/data"
PASSWORD_ENV = "VALKEY_PASSWORD"
PASSWORD_KEY = "password"
SIDECAR_PASSWORD_ENV = "VALKEY_SIDECAR_PASSWORD"
SIDECAR_PASSWORD_KEY = names.VALKEY_SIDECAR_PASSWORD_KEY
SIDECAR_ACL_FILE = "sidecar.acl"

START_SCRIPT = script("start.sh")
HEAL_SCRIPT = script("heal.sh")
HANDOVER_SCRIPT = script("handover.sh")
READY_SCRIPT = script("ready.sh")
FOLLOW_SCRIPT = script("follow.sh")
SENTINEL_SCRIPT = script("sentinel.sh")
SENTINEL_PORT = 26379
SENTINELS = 3


def config_name(cache: str) -> str:
    """ConfigMap of a managed Valkey's ``valkey.conf`` and scripts."""
    return f"{cache}-valkey-config"


def headless_name(cache: str) -> str:
    """Headless Service that gives each Valkey pod a stable DNS name."""
    return f"{cache}-valkey-headless"


def replica_name(cache: str) -> str:
    """StatefulSet of the read replicas (topology replicated)."""
    return f"{cache}-valkey-replica"


def replicas_service_name(cache: str) -> str:
    """Service of the read replicas (topology replicated)."""
    return f"{cache}-valkey-replicas"


def sentinel_name(cache: str) -> str:
    """StatefulSet and headless Service of the three sentinels (topology replicated)."""
    return f"{cache}-sentinel"


def sentinel_addresses(cache: Cache) -> list[str]:
    """``host:port`` of every sentinel, by its stable DNS name; they monitor the primary as ``cache.name``."""
    service = sentinel_name(cache.name)
    return [f"{service}-{i}.{service}.{cache.namespace}.svc:{SENTINEL_PORT}" for i in range(SENTINELS)]


def bootstrap_name(cache: str) -> str:
    """Job that forms the cluster (topology cluster)."""
    return f"{cache}-valkey-bootstrap"


def image(cache: Cache) -> str:
    return cache.valkey.get("image") or os.environ.get(names.ENV_VALKEY_IMAGE) or names.VALKEY_IMAGE_DEFAULT


def cluster_size(cache: Cache) -> int:
    return cache.valkey["shards"] * (1 + cache.valkey["replicasPerShard"])


def valkey_conf(cache: Cache) -> str:
    """``valkey.conf`` shared by every pod of the cache (no secrets in it)."""
    valkey = cache.valkey
    persistent = valkey["persistence"]["enabled"]
    lines = [
        f"port {names.VALKEY_PORT}",
        "bind * -::*",
        "protected-mode no",
        f"dir {DATA_DIR}",
        f"maxmemory {quantity_bytes(valkey['maxMemory'], 'spec.valkey.maxMemory')}",
        f"maxmemory-policy {valkey['maxMemoryPolicy']}",
        f"appendonly {'yes' if persistent else 'no'}",
        'save ""',
        "repl-diskless-sync-delay 0",  # a replaced replica copies its primary at once, not after 5 s
    ]
    if valkey["topology"] == "cluster":
        lines += [
            "cluster-enabled yes",
            f"cluster-config-file {DATA_DIR}/nodes.conf",
            "cluster-node-timeout 5000",
            "cluster-replica-validity-factor 0",  # a cache prefers a promoted replica to slots that stay down
            "cluster-preferred-endpoint-type hostname",
        ]
    return "\n".join(lines) + "\n"


def sidecar_password(password: str, cache: Cache) -> str:
    """The sidecars' password, derived from the admin one (which it does not reveal)."""
    return hmac.new(password.encode(), f"agentcache-sidecar:{cache.name}".encode(), hashlib.sha256).hexdigest()


def config_data(cache: Cache) -> dict[str, str]:
    data = {
        "valkey.conf": valkey_conf(cache),
        "start.sh": START_SCRIPT,
        "ready.sh": READY_SCRIPT,
        SIDECAR_ACL_FILE: f"{acl_user(cache)} {acl_rule(cache.key_prefix)}\n",
    }
    if cache.valkey["topology"] == "cluster":
        data["bootstrap.sh"] = BOOTSTRAP_SCRIPT
        data["heal.sh"] = HEAL_SCRIPT
        data["handover.sh"] = HANDOVER_SCRIPT
    if cache.valkey["topology"] == "replicated":
        data["follow.sh"] = FOLLOW_SCRIPT
        data["sentinel.sh"] = SENTINEL_SCRIPT
    return data


def resources(cache: Cache) -> dict[str, Any]:
    """The spec's resources over defaults: 100m CPU, memory 1.5 x maxMemory (at least +64Mi)."""
    max_memory = quantity_bytes(cache.valkey["maxMemory"], "spec.valkey.maxMemory")
    memory = mebibytes(max(max_memory * 3 // 2, max_memory + 64 * 2**20))
    given = cache.valkey["resources"]
    return {
        "requests": {"cpu": "100m", "memory": memory, **given.get("requests", {})},
        "limits": {"memory": memory, **given.get("limits", {})},
    }


def render_password_secret(cache: Cache, password: str) -> dict[str, Any]:
    """The password Secret; immutable, so it is never rotated by accident."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(cache, names.valkey_password_secret(cache.name), COMPONENT),
        "type": "Opaque",
        "immutable": True,
        "data": {
            PASSWORD_KEY: base64.b64encode(password.encode()).decode(),
            SIDECAR_PASSWORD_KEY: base64.b64encode(sidecar_password(password, cache).encode()).decode(),
        },
    }


def _password_env(cache: Cache, name: str, key: str = PASSWORD_KEY) -> dict[str, Any]:
    ref = {"name": names.valkey_password_secret(cache.name), "key": key}
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _service(cache: Cache, name: str, selector: dict[str, str], headless: bool = False) -> dict[str, Any]:
    ports = [{"name": "valkey", "port": names.VALKEY_PORT, "targetPort": "valkey", "protocol": "TCP"}]
    spec: dict[str, Any] = {"type": "ClusterIP", "selector": selector, "ports": ports}
    if headless:
        spec["clusterIP"] = "None"
        spec["publishNotReadyAddresses"] = True
        if cache.valkey["topology"] == "cluster":
            bus = {"name": "cluster-bus", "port": CLUSTER_BUS_PORT, "targetPort": "cluster-bus", "protocol": "TCP"}
            ports.append(bus)
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(cache, name, COMPONENT), "spec": spec}


def _statefulset(
    cache: Cache, name: str, role: str, replicas: int, extra_env: list[dict[str, Any]], password: str
) -> dict[str, Any]:
    valkey = cache.valkey
    persistence = valkey["persistence"]
    selector = {**selector_labels(cache, COMPONENT), ROLE_LABEL: role}
    ports = [{"name": "valkey", "containerPort": names.VALKEY_PORT, "protocol": "TCP"}]
    if valkey["topology"] == "cluster":
        ports.append({"name": "cluster-bus", "containerPort": CLUSTER_BUS_PORT, "protocol": "TCP"})
    # ready.sh: the node serves (a cluster node: its slots, or its link to its primary). The headless Service
    # publishes unready pods, which the bootstrap Job and joining nodes need to reach.
    ready = ["sh", f"{CONFIG_DIR}/ready.sh"]
    container = {
        "name": "valkey",
        "image": image(cache),
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", f"{CONFIG_DIR}/start.sh"],
        "env": [
            _password_env(cache, PASSWORD_ENV),
            _password_env(cache, SIDECAR_PASSWORD_ENV, SIDECAR_PASSWORD_KEY),
            *extra_env,
        ],
        "ports": ports,
        "readinessProbe": {"exec": {"command": ready}, "periodSeconds": 5, "timeoutSeconds": 3},
        "livenessProbe": {"tcpSocket": {"port": "valkey"}, "initialDelaySeconds": 10, "periodSeconds": 10},
        "resources": resources(cache),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "data", "mountPath": DATA_DIR},
        ],
    }
    config_volume = {"name": "config", "configMap": {"name": config_name(cache.name), "defaultMode": 0o444}}
    volumes: list[dict[str, Any]] = [config_volume]
    spec: dict[str, Any] = {
        "serviceName": headless_name(cache.name),
        "replicas": replicas,
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {
                "labels": {**labels(cache, COMPONENT), ROLE_LABEL: role},
                "annotations": {names.ANNOTATION_CONFIG_HASH: config_hash([config_data(cache), password])},
            },
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                # OnRootMismatch: a big volume is not chowned file by file on every start.
                "securityContext": {**pod_security_context(VALKEY_UID), "fsGroupChangePolicy": "OnRootMismatch"},
                # A primary and its replicas (or a cluster's nodes) on different nodes, so one node's loss keeps a copy.
                "affinity": spread_over_nodes(selector_labels(cache, COMPONENT)),
                "terminationGracePeriodSeconds": 30,
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    if valkey["topology"] == "cluster":  # a primary that is asked to stop first hands its slots to a replica
        container["lifecycle"] = {"preStop": {"exec": {"command": ["sh", f"{CONFIG_DIR}/handover.sh"]}}}
    if persistence["enabled"]:
        claim_spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": str(persistence["size"])}},
        }
        if persistence.get("storageClassName"):
            claim_spec["storageClassName"] = persistence["storageClassName"]
        spec["volumeClaimTemplates"] = [{"metadata": {"name": "data"}, "spec": claim_spec}]
        # The data goes with the cache, but survives a scale-down (a later scale-up finds it again).
        spec["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Delete", "whenScaled": "Retain"}
    else:
        volumes.append({"name": "data", "emptyDir": {}})
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": metadata(cache, name, COMPONENT), "spec": spec}


def render_statefulsets(cache: Cache, password: str) -> list[dict[str, Any]]:
    """The pods' config-hash covers valkey.conf and the password, so a re-created Secret rolls the pods."""
    base = names.valkey_name(cache.name)
    topology = cache.valkey["topology"]
    if topology == "standalone":
        return [_statefulset(cache, base, "primary", 1, [], password)]
    if topology == "replicated":
        replica_env: list[dict[str, Any]] = [
            {"name": "VALKEY_PRIMARY", "value": f"{base}.{cache.namespace}.svc:{names.VALKEY_PORT}"}
        ]
        sentinel_env: list[dict[str, Any]] = [  # follow.sh: the role comes from the sentinels
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "VALKEY_REPLICA_ANNOUNCE",
                "value": f"$(POD_NAME).{headless_name(cache.name)}.{cache.namespace}.svc",
            },
            {"name": "VALKEY_SENTINELS", "value": " ".join(sentinel_addresses(cache))},
            {"name": "VALKEY_MASTER_NAME", "value": cache.name},
        ]
        return [
            _statefulset(cache, base, "primary", 1, sentinel_env, password),
            _statefulset(
                cache,
                replica_name(cache.name),
                "replica",
                cache.valkey["replicas"],
                [*replica_env, *sentinel_env],
                password,
            ),
        ]
    announce: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "VALKEY_ANNOUNCE_HOSTNAME", "value": f"$(POD_NAME).{headless_name(cache.name)}.{cache.namespace}.svc"},
        {"name": "VALKEY_PEERS", "value": " ".join(bootstrap_nodes(cache))},
    ]
    return [_statefulset(cache, base, "node", cluster_size(cache), announce, password)]


def render_services(cache: Cache) -> list[dict[str, Any]]:
    base = names.valkey_name(cache.name)
    pods = selector_labels(cache, COMPONENT)
    services = [_service(cache, headless_name(cache.name), pods, headless=True)]
    if cache.valkey["topology"] == "replicated":
        services.append(_service(cache, base, {**pods, ROLE_LABEL: "primary"}))
        services.append(_service(cache, replicas_service_name(cache.name), {**pods, ROLE_LABEL: "replica"}))
    else:
        services.append(_service(cache, base, pods))
    return services


def bootstrap_nodes(cache: Cache) -> list[str]:
    """``host:port`` of every cluster pod, by its stable DNS name."""
    base, headless = names.valkey_name(cache.name), headless_name(cache.name)
    return [f"{base}-{i}.{headless}.{cache.namespace}.svc:{names.VALKEY_PORT}" for i in range(cluster_size(cache))]


def render_bootstrap_job(cache: Cache) -> dict[str, Any]:
    """The Job that forms the cluster; the script inside makes every run after the first a no-op."""
    replicas = str(cache.valkey["replicasPerShard"])
    container = {
        "name": "bootstrap",
        "image": image(cache),
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", f"{CONFIG_DIR}/bootstrap.sh", replicas, *bootstrap_nodes(cache)],
        "env": [_password_env(cache, "REDISCLI_AUTH")],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    config_volume = {"name": "config", "configMap": {"name": config_name(cache.name), "defaultMode": 0o444}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(cache, bootstrap_name(cache.name), BOOTSTRAP_COMPONENT),
        "spec": {
            "backoffLimit": 20,
            "activeDeadlineSeconds": 1800,
            "template": {
                "metadata": {"labels": labels(cache, BOOTSTRAP_COMPONENT)},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(VALKEY_UID),
                    "containers": [container],
                    "volumes": [config_volume],
                },
            },
        },
    }


def render_pdb(cache: Cache) -> dict[str, Any]:
    """At most one Valkey pod down by voluntary disruption (a lone pod can still be drained)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(cache, names.valkey_name(cache.name), COMPONENT),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(cache, COMPONENT)}},
    }


def render_network_policy(cache: Cache) -> dict[str, Any]:
    """Ingress to Valkey only from this cache's injected agent pods and Valkey's own pods (the
    operator never connects to Valkey, so it is not admitted either).

    Agent pods are those labelled ``agentcache.io/cache: <cache>`` that also carry the sidecar
    (``agentcache.io/injected: "true"``, set by the injector): only the sidecar talks to Valkey.
    """
    valkey_pods = selector_labels(cache, COMPONENT)
    agents = {names.LABEL_CACHE: cache.name, names.LABEL_INJECTED: "true"}
    client_port = [{"protocol": "TCP", "port": names.VALKEY_PORT}]
    if cache.valkey["topology"] == "replicated":
        client_port.append({"protocol": "TCP", "port": SENTINEL_PORT})
    peer_ports = [*client_port, {"protocol": "TCP", "port": CLUSTER_BUS_PORT}]
    peers = [
        {"podSelector": {"matchLabels": valkey_pods}},
        {"podSelector": {"matchLabels": selector_labels(cache, BOOTSTRAP_COMPONENT)}},
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(cache, names.valkey_name(cache.name), COMPONENT),
        "spec": {
            "podSelector": {"matchLabels": valkey_pods},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": agents}}], "ports": client_port},
                {"from": peers, "ports": peer_ports},
            ],
        },
    }


def render_config(cache: Cache) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(cache, config_name(cache.name), COMPONENT),
        "data": config_data(cache),
    }


def render_managed_valkey(cache: Cache, password: str) -> list[dict[str, Any]]:
    """Every child of a managed Valkey, given the (existing or newly generated) password."""
    objects = [
        render_password_secret(cache, password),
        render_config(cache),
        *render_services(cache),
        *render_statefulsets(cache, password),
        render_pdb(cache),
        render_network_policy(cache),
    ]
    if cache.valkey["topology"] == "cluster":
        objects.append(render_bootstrap_job(cache))
    return objects
