"""The sidecar configuration ConfigMap: the ``agent_config.yaml`` of DESIGN §2."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from agentcache import protocol

from .. import names
from .common import Cache, SpecError, config_hash, metadata, quantity_bytes
from .tenancy import acl_user
from .valkey import sentinel_addresses

NEAR_CACHE_MIN_BYTES = 1024
"""The sidecar's smallest ``near_cache.max_bytes``."""

FILE_STORAGE_DIR = "/var/cache/agentcache"
PASSWORD_FROM_ENV = f"${{{protocol.ENV_VALKEY_PASSWORD}:}}"
COMPONENT = "sidecar-config"
FILE_SIZE_HEADROOM = 0.9
"""The file backend evicts at 90% of the emptyDir's sizeLimit, so the kubelet never evicts the pod for it."""
SOCKET_MODE = "0666"
"""The socket lives in a pod-private emptyDir; agents run as other users than the sidecar and must connect."""


def managed_url(cache: Cache) -> str:
    """Client address of a managed Valkey: its Service in the cache's namespace."""
    return f"valkey://{names.valkey_name(cache.name)}.{cache.namespace}.svc:{names.VALKEY_PORT}"


def external_url(cache: Cache) -> str:
    """The external URL, checked: it must name a host (or a socket path) and carry no password."""
    url = cache.valkey.get("url") or ""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError when the port is not a number in 0..65535
    except ValueError as exc:
        raise SpecError(f"spec.valkey.url {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in protocol.VALKEY_URL_SCHEMES:
        raise SpecError(
            f"spec.valkey.url {url!r} must start with valkey://, valkeys://, redis://, rediss:// or unix://"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise SpecError(f"spec.valkey.url {url!r} names no socket path")
    elif not parts.hostname:
        raise SpecError(f"spec.valkey.url {url!r} names no host")
    if parts.password:
        raise SpecError(
            "spec.valkey.url must not contain a password (it would be readable by anyone who can read the "
            "AgentCache): put it in a Secret and name it in spec.valkey.passwordSecretRef"
        )
    return url


def endpoint(cache: Cache) -> str:
    """Where the cache's data lives, as shown in ``status.endpoint``."""
    if cache.spec["backend"] != "valkey":
        return f"unix://{protocol.SOCKET_PATH}"
    if cache.valkey["mode"] == "managed":
        return f"{managed_url(cache)}/0"
    parts = urlsplit(external_url(cache))
    if parts.scheme == "unix":
        return urlunsplit(parts)
    return urlunsplit(parts._replace(path=f"/{cache.valkey['db']}"))


def agent_config(cache: Cache) -> dict[str, Any]:
    """The sidecar's configuration document (DESIGN §2 shape)."""
    spec = cache.spec
    backend = spec["backend"]
    section: dict[str, Any] = {
        "enabled": True,
        "backend": backend,
        "default_ttl": spec["defaultTTL"],
        "key_prefix": cache.key_prefix,
        "compression": spec["sidecar"]["compression"],
    }
    if backend == "memory":
        section["max_size"] = spec["memory"]["maxSize"]
        section["cleanup_interval"] = spec["memory"]["cleanupInterval"]
    elif backend == "file":
        section["storage_dir"] = FILE_STORAGE_DIR
        section["max_file_size"] = spec["file"]["maxFileSize"]
        section["size_limit"] = int(
            quantity_bytes(spec["file"]["sizeLimit"], "spec.file.sizeLimit") * FILE_SIZE_HEADROOM
        )
        section["cleanup_interval"] = spec["file"]["cleanupInterval"]
    document: dict[str, Any] = {"cache": section}
    if backend == "valkey":
        valkey = cache.valkey
        managed = valkey["mode"] == "managed"
        config: dict[str, Any] = {
            "url": managed_url(cache) if managed else external_url(cache),
            "db": 0 if managed else valkey["db"],
            "password": PASSWORD_FROM_ENV,
        }
        if managed:
            config["username"] = acl_user(cache)
        elif valkey.get("username"):
            config["username"] = valkey["username"]
        if valkey["topology"] == "cluster":
            config["cluster"] = True
        if managed and valkey["topology"] == "replicated":
            config["sentinel"] = {"master_name": cache.name, "addresses": sentinel_addresses(cache)}
        document["services"] = {"valkey": {"type": "cache", "config": config}}
    document["sidecar"] = {
        "socket_path": protocol.SOCKET_PATH,
        "socket_mode": SOCKET_MODE,
        "metrics_host": "0.0.0.0",
        "metrics_port": protocol.METRICS_PORT,
        "fallback": spec["sidecar"]["fallback"],
        "log_level": spec["sidecar"]["logLevel"],
    }
    if backend == "valkey":
        near = spec["sidecar"]["nearCache"]
        max_bytes = quantity_bytes(near["maxBytes"], "spec.sidecar.nearCache.maxBytes")
        if max_bytes < NEAR_CACHE_MIN_BYTES:
            raise SpecError(f"spec.sidecar.nearCache.maxBytes: {near['maxBytes']!r} is below 1Ki")
        document["sidecar"]["near_cache"] = {"enabled": near["enabled"], "max_bytes": max_bytes}
    return document


def render_config_map(cache: Cache) -> dict[str, Any]:
    """ConfigMap ``<cache>-sidecar-config`` with key ``agent_config.yaml``; its hash is annotated on it."""
    text = yaml.safe_dump(agent_config(cache), sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(
            cache,
            names.config_map_name(cache.name),
            COMPONENT,
            annotations={names.ANNOTATION_CONFIG_HASH: config_hash(text)},
        ),
        "data": {names.CONFIG_FILE_KEY: text},
    }
