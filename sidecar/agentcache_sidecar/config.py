"""Configuration: the ``agent_config.yaml`` shape of AgentUp's cache documentation.

Loaded once at the edge into typed, validated ``Settings``. ``${VAR}`` and
``${VAR:default}`` are substituted from the environment in every string before
validation. Wrong values raise ``ConfigError`` naming the key, the value and
what is allowed; unknown keys are collected as warnings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from agentcache.protocol import (
    DEFAULT_MAX_KEY_BYTES,
    ENV_CONFIG,
    ENV_VALKEY_PASSWORD,
    LOCAL_SOCKET_PATH,
    MAX_KEY_BYTES,
    METRICS_PORT,
    VALKEY_URL_SCHEMES,
    is_control,
)

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")
MiB = 1024 * 1024
POOL_KWARGS = frozenset(
    {
        "retry_on_timeout",
        "socket_keepalive",
        "socket_timeout",
        "socket_connect_timeout",
        "health_check_interval",
        "max_connections",
    }
)


_QUANTITY = re.compile(r"^\s*(\d+)\s*([KMGT]i?)?B?\s*$")
_UNITS = {"K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def parse_quantity(text: str) -> int:
    """Bytes from ``"134217728"``, ``"128Mi"`` or ``"1G"`` (Kubernetes' binary and decimal suffixes)."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError("must be a number of bytes, optionally with a suffix such as Ki, Mi, Gi, K, M, G")
    return int(match.group(1)) * _UNITS.get(match.group(2) or "", 1)


def cgroup_memory_limit(root: str = "/sys/fs/cgroup") -> int | None:
    """The container's memory limit in bytes (cgroup v2, else v1), None when unlimited or unknown."""
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        try:
            text = Path(root, name).read_text().strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 reports "unlimited" as a huge number
            return int(text)
    return None


class ConfigError(ValueError):
    """A configuration problem a user must fix; ``str()`` is the full explanation."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", validate_default=True)


class CacheSettings(_Section):
    backend: Literal["memory", "file", "valkey"] = "memory"
    enabled: bool = True
    default_ttl: float = Field(1800, ge=0, description="seconds; 0 never expires")
    key_prefix: str = Field(
        "agentcache-local:",
        description="never empty; the default nests no operator-made prefix (agentcache:<namespace>:<name>:)",
    )
    max_size: int = Field(10000, ge=1, description="memory backend: maximum items")
    max_memory_bytes: int = Field(256 * MiB, ge=1024, description="memory backend: byte bound")
    cleanup_interval: float = Field(300, gt=0)
    storage_dir: str = "./cache"
    max_file_size: int = Field(MiB, ge=1)
    size_limit: int = Field(1024 * MiB, ge=1, description="file backend: total bytes on disk")
    compression: bool = False
    compression_threshold: int = Field(1024, ge=0)
    serialization: Literal["json", "msgpack", "pickle", "raw"] = "json"
    pipeline_size: int = Field(100, ge=1, le=10000)

    @field_validator("key_prefix")
    @classmethod
    def _prefix_is_printable(cls, value: str) -> str:
        if not value:
            raise ValueError(
                "must not be empty: an empty prefix would let this sidecar read and clear every tenant's keys"
            )
        if any(is_control(ch) for ch in value):
            raise ValueError("must not contain control characters")
        return value


class SentinelSettings(_Section):
    """``services.valkey.config.sentinel``: find the primary through Valkey Sentinel and follow its failovers."""

    master_name: str = Field(min_length=1, description="the name the sentinels monitor the primary under")
    addresses: list[str] = Field(min_length=1, description="host:port of each sentinel")
    password: str | None = Field(None, description="the sentinels' password; default: the Valkey password")

    @field_validator("addresses")
    @classmethod
    def _host_port(cls, value: list[str]) -> list[str]:
        for address in value:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{address!r} is not host:port")
        return value


class ValkeySettings(_Section):
    url: str = "valkey://localhost:6379"
    db: int = Field(0, ge=0, le=15)
    username: str | None = Field(None, description="Valkey ACL user (managed Valkey: one per AgentCache)")
    password: str | None = None
    max_connections: int = Field(20, ge=1, le=10000)
    retry_on_timeout: bool = True
    socket_keepalive: bool = True
    socket_timeout: float = Field(5.0, gt=0)
    socket_connect_timeout: float = Field(2.0, gt=0)
    health_check_interval: float = Field(
        0.0, ge=0, description="0: off (valkey-py recurses with it on when a server wants a password it was not given)"
    )
    cluster: bool = False
    sentinel: SentinelSettings | None = None

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        parts = urlsplit(value)
        if parts.scheme not in VALKEY_URL_SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(s + '://' for s in VALKEY_URL_SCHEMES)}")
        try:
            _ = parts.port  # raises ValueError when the port is not a number in 0..65535
        except ValueError:
            raise ValueError("the port must be a number between 0 and 65535") from None
        if parts.scheme == "unix" and not parts.path:
            raise ValueError("a unix:// URL needs the socket's path")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("the URL names no host")
        return value

    @model_validator(mode="before")
    @classmethod
    def _merge_pool_kwargs(cls, data: Any) -> Any:
        """``connection_pool_kwargs`` (AgentUp's high-performance block) feeds the same typed fields."""
        if not isinstance(data, dict) or not isinstance(data.get("connection_pool_kwargs"), dict):
            return data
        pool_kwargs = data["connection_pool_kwargs"]
        unknown = sorted(set(pool_kwargs) - POOL_KWARGS)
        if unknown:
            raise ValueError(f"connection_pool_kwargs: unsupported keys {unknown}; allowed: {sorted(POOL_KWARGS)}")
        return {**pool_kwargs, **{k: v for k, v in data.items() if k != "connection_pool_kwargs"}}

    @model_validator(mode="after")
    def _one_topology(self) -> ValkeySettings:
        if self.cluster and self.sentinel:
            raise ValueError("sentinel: a Valkey Cluster has no Sentinel; use cluster: true or sentinel:, not both")
        return self

    def effective_password(self) -> str | None:
        """Password from the URL, else ``password``, else ``$AGENTCACHE_VALKEY_PASSWORD``."""
        from_url = urlsplit(self.url).password
        if from_url:
            return unquote(from_url)
        return self.password or os.environ.get(ENV_VALKEY_PASSWORD) or None


class ValkeyService(_Section):
    type: str = "cache"
    config: ValkeySettings = Field(default_factory=ValkeySettings)


class Services(_Section):
    valkey: ValkeyService | None = None


class NearCacheSettings(_Section):
    """``sidecar.near_cache``: recently read Valkey entries kept in the sidecar, invalidated by Valkey's
    client-side caching (``CLIENT TRACKING``); the valkey backend only."""

    enabled: bool = True
    max_items: int = Field(10000, ge=1, le=10_000_000)
    max_bytes: int = Field(
        32 * MiB, ge=1024, description="bytes (or 32Mi) of keys and values held, at most (and within max_memory)"
    )
    max_value_bytes: int = Field(MiB, ge=1, description="larger values are not kept near")

    @field_validator("max_bytes", "max_value_bytes", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> Any:
        return parse_quantity(value) if isinstance(value, str) else value


class SidecarSettings(_Section):
    socket_path: str = LOCAL_SOCKET_PATH
    socket_mode: int = 0o660
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(METRICS_PORT, ge=0, le=65535, description="0 disables the metrics listener")
    max_value_bytes: int = Field(8 * MiB, ge=1, le=512 * MiB)
    max_key_bytes: int = Field(
        DEFAULT_MAX_KEY_BYTES, ge=1, le=MAX_KEY_BYTES, description="percent-encoded, a key must fit an HTTP line"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    fallback: Literal["miss", "memory"] = "memory"
    shutdown_timeout: float = Field(10.0, ge=0)
    max_memory: int | None = Field(
        None,
        ge=32 * MiB,
        description="bytes (or 128Mi, 1G); default: the cgroup "
        "limit, else 1Gi; the sidecar's buffers and memory store are sized from it",
    )
    max_connections: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="default: from max_memory and the "
        "fd limit; beyond it a new connection gets a JSON 503 and is closed",
    )
    header_timeout: float = Field(10.0, gt=0, description="seconds to send a request's line and headers")
    body_timeout: float = Field(30.0, gt=0, description="seconds to send a request's body")
    idle_timeout: float = Field(60.0, gt=0, description="seconds a keep-alive connection may sit idle")
    send_timeout: float = Field(30.0, gt=0, description="seconds a client may leave an answer unread")
    max_pipeline: int = Field(16, ge=1, le=1024, description="requests read ahead of their answers per connection")
    max_batch_bytes: int | None = Field(
        None, ge=1024, description="batch request/answer bytes; default from max_memory"
    )
    backend_timeout: float = Field(0.25, gt=0, le=60, description="deadline of one backend call, retries included")
    breaker_threshold: int = Field(3, ge=1, le=1000, description="consecutive backend timeouts that open the circuit")
    max_lock_ttl: float = Field(600.0, gt=0, le=86400, description="seconds; longer lock requests are shortened")
    max_locks: int = Field(10000, ge=1, le=10_000_000, description="locks held by the memory store at once")
    near_cache: NearCacheSettings = Field(default_factory=NearCacheSettings)

    @field_validator("max_memory", "max_batch_bytes", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> Any:
        return parse_quantity(value) if isinstance(value, str) else value

    @field_validator("socket_mode", mode="before")
    @classmethod
    def _octal_mode(cls, value: Any) -> int:
        if isinstance(value, str):
            try:
                value = int(value, 8)
            except ValueError:
                raise ValueError("must be an octal file mode such as 0660") from None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o777:
            raise ValueError("must be an octal file mode between 0000 and 0777")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class Settings(_Section):
    cache: CacheSettings = Field(default_factory=CacheSettings)
    services: Services = Field(default_factory=Services)
    sidecar: SidecarSettings = Field(default_factory=SidecarSettings)
    state: dict[str, Any] | None = None

    @property
    def valkey(self) -> ValkeySettings:
        """The Valkey used for caching (``services.valkey.config``), defaults when absent."""
        return self.services.valkey.config if self.services.valkey else ValkeySettings()


class LoadedConfig(BaseModel):
    settings: Settings
    warnings: list[str]
    source: str


def substitute_env(node: Any, environ: Mapping[str, str] | None = None, path: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:default}`` in every string of ``node``.

    A ``${VAR}`` without default whose variable is unset is an error naming both.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    if isinstance(node, dict):
        return {key: substitute_env(value, env, f"{path}.{key}" if path else str(key)) for key, value in node.items()}
    if isinstance(node, list):
        return [substitute_env(value, env, f"{path}[{i}]") for i, value in enumerate(node)]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is None:
            raise ConfigError(
                f"{path}: environment variable {name} is not set and ${{{name}}} has no default "
                f"(set it, or write ${{{name}:default}})"
            )
        return default

    return _ENV_REF.sub(replace, node)


def _unknown_keys(model: BaseModel, path: str = "") -> list[str]:
    found = [f"{path}{key}" for key in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, _Section):
            found.extend(_unknown_keys(value, f"{path}{name}."))
    return found


def _describe(error: ErrorDetails) -> str:
    location = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-after"))
    value = error.get("input")
    message = error["msg"]
    if error["type"] == "literal_error":
        message = "must be one of " + error["ctx"]["expected"].replace("'", "")
    return f"{location}: {value!r} is not valid: {message}"


def parse_settings(raw: Any, environ: Mapping[str, str] | None = None, source: str = "<config>") -> LoadedConfig:
    """Validate an already-parsed YAML document."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with cache:, services:, sidecar: sections")
    substituted = substitute_env(raw, environ)
    try:
        settings = Settings.model_validate(substituted)
    except ValidationError as exc:
        problems = "\n  ".join(_describe(err) for err in exc.errors())
        raise ConfigError(f"{source}: invalid configuration:\n  {problems}") from None
    warnings = [f"{source}: unknown key {key!r} is ignored" for key in _unknown_keys(settings)]
    return LoadedConfig(settings=settings, warnings=warnings, source=source)


def load_config(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Load ``path`` (or ``$AGENTCACHE_CONFIG``); with neither, the embedded default."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(ENV_CONFIG)
    if not path:
        return parse_settings({}, environ, source="<embedded default>")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): is this the right file?") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_settings(raw, environ, source=str(path))
