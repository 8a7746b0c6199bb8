"""The JSONPatch that gives an agent pod its cache sidecar (pure: pod + AgentCache in, patch out).

Invariants of ``build_patch``:

- A pod that already has a container named ``names.SIDECAR_CONTAINER`` gets ``[]``.
- The user's init containers and containers keep their order and everything they
  had; they only gain the socket mount and ``AGENTCACHE_SOCKET`` (an existing
  ``AGENTCACHE_SOCKET`` is left as the user set it).
- The sidecar is the FIRST init container. Native sidecars start in order and the
  next init container starts only after the sidecar's startup probe passes, so
  every later init container and every container can use the cache from its
  first instruction. The price is that the user's init containers wait for the
  sidecar to be ready (with ``fallback: memory`` it is ready without Valkey).
- The pod is annotated ``agentcache.io/config-hash`` with the cache's ``status.configHash``
  (when it has one): the sidecar config the pod starts with, which the operator compares
  with the current one to count outdated pods.
- Anything that would make an invalid pod (a volume or mount path already taken,
  the metrics port already used, a bad override annotation) raises
  ``InjectionError`` with a message that names it, never a broken patch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentcache import protocol

from .. import names, quantity
from ..crd import with_defaults
from ..render.sidecar_config import FILE_STORAGE_DIR

LOG_LEVELS = ("debug", "info", "warning", "error")
SIDECAR_COMMAND = ["agentcache-sidecar", "--config", names.CONFIG_PATH]

SAFE_TO_EVICT_LOCAL_VOLUMES = "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes"
SCRAPE_ANNOTATIONS = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": str(protocol.METRICS_PORT),
    "prometheus.io/path": protocol.METRICS_PATH,
}

RESOURCE_OVERRIDES = {  # annotation -> (requests|limits, resource)
    names.ANNOTATION_SIDECAR_CPU: ("requests", "cpu"),
    names.ANNOTATION_SIDECAR_MEMORY: ("requests", "memory"),
    names.ANNOTATION_SIDECAR_CPU_LIMIT: ("limits", "cpu"),
    names.ANNOTATION_SIDECAR_MEMORY_LIMIT: ("limits", "memory"),
}


class InjectionError(ValueError):
    """The pod cannot get the sidecar it asked for; the message says why and what to change."""


@dataclass(frozen=True)
class SidecarDefaults:
    """What the injector uses when the AgentCache does not say."""

    image: str = names.SIDECAR_IMAGE_DEFAULT
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    kubernetes_version: tuple[int, int] | None = None  # the API server's (major, minor), when known
    # Requests and limits the sidecar gets unless the AgentCache or the pod says otherwise, so that
    # a namespace whose ResourceQuota requires them admits the pod.
    resources: tuple[tuple[str, str, str], ...] = (
        ("requests", "cpu", "25m"),
        ("requests", "memory", "32Mi"),
        ("limits", "cpu", "1"),
        ("limits", "memory", "128Mi"),
    )


def escape_pointer(token: str) -> str:
    """One JSON-pointer reference token (RFC 6901: ``~`` -> ``~0``, ``/`` -> ``~1``)."""
    return token.replace("~", "~0").replace("/", "~1")


def all_containers(pod: dict) -> list[dict]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def has_sidecar(pod: dict) -> bool:
    return any(c.get("name") == names.SIDECAR_CONTAINER for c in all_containers(pod))


def build_patch(pod: dict, cache: dict, namespace: str, settings: SidecarDefaults) -> list[dict]:
    """JSONPatch ops that inject ``cache``'s sidecar into ``pod`` (a pod of ``namespace``)."""
    if has_sidecar(pod):
        return []
    cache_name = cache["metadata"]["name"]
    cache_namespace = cache["metadata"].get("namespace")
    if cache_namespace != namespace:
        raise InjectionError(f"AgentCache {cache_namespace}/{cache_name} is not in the pod's namespace {namespace!r}")
    spec = pod.get("spec") or {}
    if not spec.get("containers"):
        raise InjectionError("the pod has no containers")
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    cache = {**cache, "spec": with_defaults(cache.get("spec"))}
    volumes = pod_volumes(cache)
    _check_conflicts(spec, volumes)

    config_hash = (cache.get("status") or {}).get("configHash")
    local_volumes = [v["name"] for v in volumes if "emptyDir" in v]
    ops = (
        _label_ops(pod)
        + _annotation_ops(annotations, config_hash, local_volumes)
        + _volume_ops(spec, volumes)
        + _pull_secret_ops(spec, cache, settings)
    )
    for field in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(field) or []):
            ops += _socket_ops(f"/spec/{field}/{index}", container)
    sidecar = sidecar_container(cache, annotations, settings)
    if spec.get("initContainers"):
        ops.append({"op": "add", "path": "/spec/initContainers/0", "value": sidecar})
    else:
        ops.append({"op": "add", "path": "/spec/initContainers", "value": [sidecar]})
    return ops


# The helpers below take the AgentCache with its CRD defaults filled in (``with_defaults``).


def backend(cache: dict) -> str:
    return cache["spec"]["backend"]


def pod_volumes(cache: dict) -> list[dict]:
    """The volumes the sidecar needs: the socket dir, the config, and for ``file`` its storage."""
    volumes = [
        {"name": names.SOCKET_VOLUME, "emptyDir": {"sizeLimit": "1Mi"}},
        {
            "name": names.CONFIG_VOLUME,
            "configMap": {"name": names.config_map_name(cache["metadata"]["name"]), "defaultMode": 0o444},
        },
    ]
    if backend(cache) == "file":
        volumes.append({"name": names.DATA_VOLUME, "emptyDir": {"sizeLimit": str(cache["spec"]["file"]["sizeLimit"])}})
    return volumes


def password_env(cache: dict) -> list[dict]:
    """``AGENTCACHE_VALKEY_PASSWORD`` from the managed or the user's Secret; nothing otherwise."""
    if backend(cache) != "valkey":
        return []
    valkey = cache["spec"]["valkey"]
    if valkey["mode"] == "managed":
        ref = {
            "name": names.valkey_password_secret(cache["metadata"]["name"]),
            "key": names.VALKEY_SIDECAR_PASSWORD_KEY,
        }
    else:
        secret = valkey.get("passwordSecretRef") or {}
        if not secret.get("name"):
            return []
        ref = {"name": secret["name"], "key": secret.get("key") or "password"}
    return [{"name": protocol.ENV_VALKEY_PASSWORD, "valueFrom": {"secretKeyRef": ref}}]


def sidecar_resources(
    cache: dict, annotations: dict[str, str], defaults: tuple[tuple[str, str, str], ...] = ()
) -> dict:
    """``spec.sidecar.resources`` with the pod's override annotations applied, then ``defaults``
    for what neither sets (a default limit is never below the request), checked."""
    base = cache["spec"]["sidecar"].get("resources") or {}
    resources = {
        kind: {name: str(value) for name, value in (base.get(kind) or {}).items()}
        for kind in ("requests", "limits")
        if base.get(kind)
    }
    for annotation, (kind, resource) in RESOURCE_OVERRIDES.items():
        if annotation not in annotations:
            continue
        value = str(annotations[annotation]).strip()
        if quantity.parse(value) is None:
            raise InjectionError(
                f"annotation {annotation}={annotations[annotation]!r} is not a Kubernetes quantity "
                f"(examples: 100m, 0.5, 64Mi, 1Gi)"
            )
        resources.setdefault(kind, {})[resource] = value
    for kind, resource, value in sorted(defaults, key=lambda d: d[0] != "requests"):
        if kind == "limits" and resource in resources.get("requests", {}):
            value = max(value, resources["requests"][resource], key=quantity.value)
        resources.setdefault(kind, {}).setdefault(resource, value)
    for resource in ("cpu", "memory"):
        request = resources.get("requests", {}).get(resource)
        limit = resources.get("limits", {}).get(resource)
        low, high = quantity.parse(request or ""), quantity.parse(limit or "")
        if low is not None and high is not None and low > high:
            raise InjectionError(
                f"sidecar {resource} request {request} is above its limit {limit} "
                f"(from the AgentCache's spec.sidecar.resources and the pod's agentcache.io/sidecar-* annotations)"
            )
    return resources


def log_level(annotations: dict[str, str]) -> str | None:
    value = annotations.get(names.ANNOTATION_SIDECAR_LOG_LEVEL)
    if value is None:
        return None
    level = str(value).strip().lower()
    if level not in LOG_LEVELS:
        raise InjectionError(
            f"annotation {names.ANNOTATION_SIDECAR_LOG_LEVEL}={value!r} is not one of {', '.join(LOG_LEVELS)}"
        )
    return level


def sidecar_container(cache: dict, annotations: dict[str, str], settings: SidecarDefaults) -> dict:
    """The native sidecar (``restartPolicy: Always`` init container) serving the cache socket."""
    sidecar_spec = cache["spec"]["sidecar"]
    env = [{"name": protocol.ENV_SOCKET, "value": protocol.SOCKET_PATH}, *password_env(cache)]
    level = log_level(annotations)
    if level:
        env.append({"name": protocol.ENV_LOG_LEVEL, "value": level})
    mounts = [
        {"name": names.SOCKET_VOLUME, "mountPath": protocol.SOCKET_DIR},
        {"name": names.CONFIG_VOLUME, "mountPath": names.CONFIG_DIR, "readOnly": True},
    ]
    if backend(cache) == "file":
        mounts.append({"name": names.DATA_VOLUME, "mountPath": FILE_STORAGE_DIR})
    container = {
        "name": names.SIDECAR_CONTAINER,
        "image": sidecar_spec.get("image") or settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "restartPolicy": "Always",
        "command": list(SIDECAR_COMMAND),
        "env": env,
        "ports": [{"name": names.METRICS_PORT_NAME, "containerPort": protocol.METRICS_PORT, "protocol": "TCP"}],
        "volumeMounts": mounts,
        # "The socket serves", whatever the backend's health: an unhealthy cache must never take
        # the agent's pod out of its Service (backend health is in metrics, stats and status).
        "startupProbe": _probe(protocol.HEALTH_PATH, period=1, failures=60),
        "readinessProbe": _probe(protocol.HEALTH_PATH, period=5, failures=3),
        "livenessProbe": _probe(protocol.HEALTH_PATH, period=10, failures=3),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": names.SIDECAR_UID,
            "runAsGroup": names.SIDECAR_UID,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    container["resources"] = sidecar_resources(cache, annotations, settings.resources)
    return container


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": protocol.METRICS_PORT, "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": 1,
        "failureThreshold": failures,
    }


def _check_conflicts(spec: dict, volumes: list[dict]) -> None:
    taken = {v.get("name") for v in spec.get("volumes") or []}
    for volume in volumes:
        if volume["name"] in taken:
            raise InjectionError(
                f"the pod already has a volume named {volume['name']!r}, which the cache sidecar needs; rename it"
            )
    for container in all_containers({"spec": spec}):
        for port in container.get("ports") or []:
            if port.get("containerPort") == protocol.METRICS_PORT:
                raise InjectionError(
                    f"container {container.get('name')!r} already uses port {protocol.METRICS_PORT}, "
                    f"the cache sidecar's metrics port"
                )
        for mount in container.get("volumeMounts") or []:
            if mount.get("mountPath", "").rstrip("/") == protocol.SOCKET_DIR:
                raise InjectionError(
                    f"container {container.get('name')!r} already mounts {mount.get('name')!r} at "
                    f"{protocol.SOCKET_DIR}, where the cache socket goes"
                )


def _label_ops(pod: dict) -> list[dict]:
    labels = (pod.get("metadata") or {}).get("labels")
    if labels is None:
        return [{"op": "add", "path": "/metadata/labels", "value": {names.LABEL_INJECTED: "true"}}]
    return [{"op": "add", "path": f"/metadata/labels/{escape_pointer(names.LABEL_INJECTED)}", "value": "true"}]


def _annotation_ops(annotations: dict[str, str], config_hash: str | None, local_volumes: list[str]) -> list[dict]:
    """Scrape annotations, only when the pod has none of its own (then it scrapes its own app);
    the config hash, over any the pod brought (JSONPatch ``add`` replaces an existing key); and
    the sidecar's emptyDir volumes added to those the cluster autoscaler may evict the pod with
    (it holds back a pod with local volumes otherwise)."""
    wanted = {} if any(key in annotations for key in SCRAPE_ANNOTATIONS) else dict(SCRAPE_ANNOTATIONS)
    if config_hash:
        wanted[names.ANNOTATION_CONFIG_HASH] = str(config_hash)
    evictable = [v for v in str(annotations.get(SAFE_TO_EVICT_LOCAL_VOLUMES, "")).split(",") if v.strip()]
    wanted[SAFE_TO_EVICT_LOCAL_VOLUMES] = ",".join([*evictable, *(v for v in local_volumes if v not in evictable)])
    if not wanted:
        return []
    if not annotations:
        return [{"op": "add", "path": "/metadata/annotations", "value": wanted}]
    return [
        {"op": "add", "path": f"/metadata/annotations/{escape_pointer(key)}", "value": value}
        for key, value in wanted.items()
    ]


def _pull_secret_ops(spec: dict, cache: dict, settings: SidecarDefaults) -> list[dict]:
    """The sidecar image's pull secrets (the AgentCache's, then the injector's), those the pod lacks."""
    have = {s.get("name") for s in spec.get("imagePullSecrets") or []}
    wanted = [s["name"] for s in cache["spec"]["sidecar"].get("imagePullSecrets") or []]
    missing = list(dict.fromkeys(n for n in [*wanted, *settings.image_pull_secrets] if n not in have))
    if not missing:
        return []
    if spec.get("imagePullSecrets") is None:
        return [{"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": n} for n in missing]}]
    return [{"op": "add", "path": "/spec/imagePullSecrets/-", "value": {"name": n}} for n in missing]


def _volume_ops(spec: dict, volumes: list[dict]) -> list[dict]:
    if spec.get("volumes") is None:
        return [{"op": "add", "path": "/spec/volumes", "value": volumes}]
    return [{"op": "add", "path": "/spec/volumes/-", "value": volume} for volume in volumes]


def _socket_ops(path: str, container: dict) -> list[dict]:
    """The socket mount (read-only: clients may connect, not replace it) and AGENTCACHE_SOCKET."""
    mount = {"name": names.SOCKET_VOLUME, "mountPath": protocol.SOCKET_DIR, "readOnly": True}
    ops: list[dict[str, Any]] = []
    if container.get("volumeMounts") is None:
        ops.append({"op": "add", "path": f"{path}/volumeMounts", "value": [mount]})
    else:
        ops.append({"op": "add", "path": f"{path}/volumeMounts/-", "value": mount})
    env = container.get("env")
    if env is None:
        ops.append(
            {
                "op": "add",
                "path": f"{path}/env",
                "value": [{"name": protocol.ENV_SOCKET, "value": protocol.SOCKET_PATH}],
            }
        )
    elif not any(item.get("name") == protocol.ENV_SOCKET for item in env):
        ops.append(
            {
                "op": "add",
                "path": f"{path}/env/-",
                "value": {"name": protocol.ENV_SOCKET, "value": protocol.SOCKET_PATH},
            }
        )
    return ops
