"""Configuration: the ``agent_config.yaml`` shape of AgentUp's cache documentation.

Loaded once at the edge into typed, validated ``Settings`` (plain typed classes checked by a small validator
here: no pydantic, and PyYAML only when a file is read). ``${VAR}`` and
``${VAR:default}`` are substituted from the environment in every string before
validation. Wrong values raise ``ConfigError`` naming the key, the value and
what is allowed; unknown keys are collected as warnings.
"""

from __future__ import annotations

import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

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


# --- the validator: typed sections, checked by their annotations and each field's rule --------------------------------
#
# pydantic cost the sidecar 15-25 ms of start and several MB of memory for a dozen sections read once; these
# sections are plain classes, and ``_Section.parse`` checks a mapping against their annotations (bool, int, float,
# str, Literal[...], list[str], dict, X | None, a nested section) and each field's ``rule``: ranges, a conversion
# before the check (quantities, octal modes) and a check after it. Strings are converted as pydantic's lax mode
# did (``${VAR}`` substitution makes every substituted value a string): "5" is 5, "true"/"no" are booleans.


class _Invalid(ValueError):
    """One field's value is not allowed; the message says what is."""


class _Rule:
    """What a field allows beyond its type: bounds, a conversion before the check, a check after it."""

    __slots__ = ("ge", "gt", "le", "min_length", "before", "check")

    def __init__(
        self,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        min_length: int | None = None,
        before: Callable[[Any], Any] | None = None,
        check: Callable[[Any], Any] | None = None,
    ):
        self.ge, self.gt, self.le, self.min_length, self.before, self.check = ge, gt, le, min_length, before, check


_NO_RULE = _Rule()
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
"""No default: the key is required."""


class _Field:
    __slots__ = ("default", "factory", "rule", "secret")

    def __init__(self, default: Any, factory: Any, rule: _Rule, secret: bool):
        self.default, self.factory, self.rule, self.secret = default, factory, rule, secret

    def make_default(self) -> Any:
        return self.factory() if self.factory is not None else self.default


def rule(default: Any = MISSING, *, factory: Any = None, secret: bool = False, **checks: Any) -> Any:
    """A field's default (or ``factory``) and ``_Rule``; neither: the key is required; a ``secret`` is left out of
    the section's repr."""
    return _Field(default, factory, _Rule(**checks), secret)


_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
_INT = re.compile(r"^\s*[+-]?\d+\s*$")


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _Invalid("must be true or false")


def _as_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.match(value):
        return int(value)
    raise _Invalid("must be an integer")


def _as_float(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _Invalid("must be a number") from None
    else:
        raise _Invalid("must be a number")
    if not math.isfinite(number):
        raise _Invalid("must be a finite number")
    return number


def _choices(options: tuple) -> str:
    names = [str(option) for option in options]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _bounds(spec: _Rule) -> str:
    def show(number: float) -> str:
        return f"{int(number)}" if float(number).is_integer() else f"{number}"

    low = f">= {show(spec.ge)}" if spec.ge is not None else f"> {show(spec.gt)}" if spec.gt is not None else ""
    if spec.le is None:
        return low
    if spec.ge is not None:
        return f"from {show(spec.ge)} to {show(spec.le)}"
    return f"{low} and <= {show(spec.le)}" if low else f"<= {show(spec.le)}"


class _Section:
    """A section of the configuration: its annotated class attributes are its fields (a plain value or ``rule()``
    as the default); ``parse`` checks a mapping against them. Plain classes, not dataclasses: generating a
    dataclass's methods costs more start time than the whole check."""

    _spec: ClassVar[dict[str, _Field]]
    _hints: ClassVar[dict[str, Any] | None]

    def __init_subclass__(cls) -> None:
        cls._spec, cls._hints = {}, None
        for name in cls.__dict__.get("__annotations__", {}):
            if name.startswith("_"):
                continue
            value = cls.__dict__.get(name, MISSING)
            cls._spec[name] = value if isinstance(value, _Field) else _Field(value, None, _NO_RULE, False)
            if isinstance(value, _Field):
                delattr(cls, name)

    def __init__(self, **values: Any):
        """Built directly (``CacheSettings(storage_dir=...)``): the same checks as from YAML."""
        spec = type(self)._spec
        unexpected = sorted(set(values) - set(spec))
        if unexpected:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(unexpected)}")
        errors: list[str] = []
        checked = type(self)._check_fields(values, "", errors, [], built=True)
        if errors:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
        self._fill(checked)
        try:
            self._check()
        except _Invalid as exc:
            raise ConfigError(f"invalid configuration: {exc}") from None

    def _fill(self, values: dict[str, Any]) -> None:
        for name, item in type(self)._spec.items():
            setattr(self, name, values[name] if name in values else item.make_default())

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name, item in type(self)._spec.items() if not item.secret
        )
        return f"{type(self).__name__}({shown})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def _types(cls) -> dict[str, Any]:
        if cls._hints is None:
            hints = typing.get_type_hints(cls)
            cls._hints = {name: hints[name] for name in cls._spec}
        return cls._hints

    @classmethod
    def parse(cls, data: Any, path: str, errors: list[str], unknown: list[str]) -> Any:
        """An instance from ``data`` (a mapping); problems go to ``errors``, unknown keys' paths to ``unknown``."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            errors.append(f"{path.rstrip('.')}: {data!r} is not valid: must be a mapping")
            return None
        data = cls._prepare(data, path, errors)
        known = cls._spec
        unknown.extend(f"{path}{key}" for key in data if key not in known)
        before = len(errors)
        values = cls._check_fields({k: v for k, v in data.items() if k in known}, path, errors, unknown)
        if len(errors) > before:
            return None
        instance = cls.__new__(cls)
        instance._fill(values)
        try:
            instance._check()
        except _Invalid as exc:
            errors.append(f"{path.rstrip('.')}: {exc}")
            return None
        return instance

    @classmethod
    def _prepare(cls, data: dict, path: str, errors: list[str]) -> dict:
        """The mapping before its fields are checked (a hook: ``connection_pool_kwargs``)."""
        return data

    def _check(self) -> None:
        """Checks across fields (a hook); raise ``_Invalid``."""

    @classmethod
    def _check_fields(cls, data: dict, path: str, errors: list[str], unknown: list[str], built: bool = False) -> dict:
        hints = cls._types()
        out = {}
        for name, item in cls._spec.items():
            if item.default is MISSING and item.factory is None and name not in data:
                errors.append(f"{path}{name}: is required")
        for name, value in data.items():
            if built and isinstance(value, _Section):
                out[name] = value
                continue
            try:
                out[name] = _convert(value, hints[name], cls._spec[name].rule, f"{path}{name}", errors, unknown)
            except _Skip:
                continue
            except _Invalid as exc:
                errors.append(f"{path}{name}: {value!r} is not valid: {exc}")
        return out


def _convert(value: Any, hint: Any, spec: _Rule, path: str, errors: list[str], unknown: list[str]) -> Any:
    """``value`` as the annotation ``hint`` and ``spec`` allow, else ``_Invalid``."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        origin = typing.get_origin(hint)
    if spec.before is not None:
        try:
            value = spec.before(value)
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
    if isinstance(hint, type) and issubclass(hint, _Section):
        nested = hint.parse(value, path + ".", errors, unknown)
        if nested is None:
            raise _Skip
        return nested
    if origin is Literal:
        options = typing.get_args(hint)
        if value not in options:
            raise _Invalid("must be one of " + _choices(options))
    elif hint is bool:
        value = _as_bool(value)
    elif hint is int:
        value = _as_int(value)
    elif hint is float:
        value = _as_float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise _Invalid("must be a string")
    elif origin is list:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise _Invalid("must be a list of strings")
    elif origin is dict:
        if not isinstance(value, dict):
            raise _Invalid("must be a mapping")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (
            (spec.ge is not None and value < spec.ge)
            or (spec.gt is not None and value <= spec.gt)
            or (spec.le is not None and value > spec.le)
        ):
            raise _Invalid(f"must be {_bounds(spec)}")
    if spec.min_length is not None and len(value) < spec.min_length:
        raise _Invalid(f"must have at least {spec.min_length} item{'s' if spec.min_length > 1 else ''}")
    if spec.check is not None:
        try:
            value = spec.check(value)
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
    return value


class _Skip(_Invalid):
    """A nested section whose own errors are already listed."""


def _quantity(value: Any) -> Any:
    return parse_quantity(value) if isinstance(value, str) else value


def _prefix_is_printable(value: str) -> str:
    if not value:
        raise ValueError("must not be empty: an empty prefix would let this sidecar read and clear every tenant's keys")
    if any(is_control(ch) for ch in value):
        raise ValueError("must not contain control characters")
    return value


def _host_ports(value: list[str]) -> list[str]:
    for address in value:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{address!r} is not host:port")
    return value


def _valkey_url(value: str) -> str:
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


def _octal_mode(value: Any) -> int:
    if isinstance(value, str):
        try:
            value = int(value, 8)
        except ValueError:
            raise ValueError("must be an octal file mode such as 0660") from None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o777:
        raise ValueError("must be an octal file mode between 0000 and 0777")
    return value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


# --- the sections ----------------------------------------------------------------------------------------------------


class CacheSettings(_Section):
    backend: Literal["memory", "file", "valkey"] = "memory"
    enabled: bool = True
    default_ttl: float = rule(1800.0, ge=0)  # seconds; 0 never expires
    # never empty; the default nests no operator-made prefix (agentcache:<namespace>:<name>:)
    key_prefix: str = rule("agentcache-local:", check=_prefix_is_printable)
    max_size: int = rule(10000, ge=1)  # memory backend: maximum items
    max_memory_bytes: int = rule(256 * MiB, ge=1024)  # memory backend: byte bound
    cleanup_interval: float = rule(300.0, gt=0)
    storage_dir: str = "./cache"
    max_file_size: int = rule(MiB, ge=1)
    size_limit: int = rule(1024 * MiB, ge=1)  # file backend: total bytes on disk
    compression: bool = False
    compression_threshold: int = rule(1024, ge=0)
    serialization: Literal["json", "msgpack", "pickle", "raw"] = "json"
    pipeline_size: int = rule(100, ge=1, le=10000)


class SentinelSettings(_Section):
    """``services.valkey.config.sentinel``: find the primary through Valkey Sentinel and follow its failovers."""

    master_name: str = rule(min_length=1)  # the name the sentinels monitor the primary under
    addresses: list[str] = rule(min_length=1, check=_host_ports)  # host:port of each sentinel
    password: str | None = rule(None, secret=True)  # the sentinels' password; default: the Valkey password


class ValkeySettings(_Section):
    url: str = rule("valkey://localhost:6379", check=_valkey_url)
    db: int = rule(0, ge=0, le=15)
    username: str | None = None  # Valkey ACL user (managed Valkey: one per AgentCache)
    password: str | None = rule(None, secret=True)
    max_connections: int = rule(20, ge=1, le=10000)
    retry_on_timeout: bool = True
    socket_keepalive: bool = True
    socket_timeout: float = rule(5.0, gt=0)
    socket_connect_timeout: float = rule(2.0, gt=0)
    # 0: off (valkey-py recurses with it on when a server wants a password it was not given)
    health_check_interval: float = rule(0.0, ge=0)
    cluster: bool = False
    sentinel: SentinelSettings | None = None

    @classmethod
    def _prepare(cls, data: dict, path: str, errors: list[str]) -> dict:
        """``connection_pool_kwargs`` (AgentUp's high-performance block) feeds the same typed fields."""
        pool_kwargs = data.get("connection_pool_kwargs")
        if not isinstance(pool_kwargs, dict):
            return data
        unknown = sorted(set(pool_kwargs) - POOL_KWARGS)
        if unknown:
            errors.append(
                f"{path}connection_pool_kwargs: {pool_kwargs!r} is not valid: unsupported keys {unknown}; "
                f"allowed: {sorted(POOL_KWARGS)}"
            )
            pool_kwargs = {k: v for k, v in pool_kwargs.items() if k in POOL_KWARGS}
        return {**pool_kwargs, **{k: v for k, v in data.items() if k != "connection_pool_kwargs"}}

    def _check(self) -> None:
        if self.cluster and self.sentinel:
            raise _Invalid("sentinel: a Valkey Cluster has no Sentinel; use cluster: true or sentinel:, not both")

    def effective_password(self) -> str | None:
        """Password from the URL, else ``password``, else ``$AGENTCACHE_VALKEY_PASSWORD``."""
        from_url = urlsplit(self.url).password
        if from_url:
            return unquote(from_url)
        return self.password or os.environ.get(ENV_VALKEY_PASSWORD) or None


class ValkeyService(_Section):
    type: str = "cache"
    config: ValkeySettings = rule(factory=ValkeySettings)


class Services(_Section):
    valkey: ValkeyService | None = None


class NearCacheSettings(_Section):
    """``sidecar.near_cache``: recently read Valkey entries kept in the sidecar, invalidated by Valkey's
    client-side caching (``CLIENT TRACKING``); the valkey backend only."""

    enabled: bool = True
    max_items: int = rule(10000, ge=1, le=10_000_000)
    max_bytes: int = rule(32 * MiB, ge=1024, before=_quantity)  # bytes (or 32Mi) of keys and values, within max_memory
    max_value_bytes: int = rule(MiB, ge=1, before=_quantity)  # larger values are not kept near


class SidecarSettings(_Section):
    socket_path: str = LOCAL_SOCKET_PATH
    socket_mode: int = rule(0o660, before=_octal_mode)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = rule(METRICS_PORT, ge=0, le=65535)  # 0 disables the metrics listener
    max_value_bytes: int = rule(8 * MiB, ge=1, le=512 * MiB)
    # percent-encoded, a key must fit an HTTP line
    max_key_bytes: int = rule(DEFAULT_MAX_KEY_BYTES, ge=1, le=MAX_KEY_BYTES)
    log_level: Literal["debug", "info", "warning", "error"] = rule("info", before=_lower)
    fallback: Literal["miss", "memory"] = "memory"
    shutdown_timeout: float = rule(10.0, ge=0)
    # bytes (or 128Mi, 1G); default: the cgroup limit, else 1Gi; the sidecar's buffers and memory store are sized
    # from it
    max_memory: int | None = rule(None, ge=32 * MiB, before=_quantity)
    # default: from max_memory and the fd limit; beyond it a new connection gets a JSON 503 and is closed
    max_connections: int | None = rule(None, ge=1, le=1_000_000)
    header_timeout: float = rule(10.0, gt=0)  # seconds to send a request's line and headers
    body_timeout: float = rule(30.0, gt=0)  # seconds to send a request's body
    idle_timeout: float = rule(60.0, gt=0)  # seconds a keep-alive connection may sit idle
    send_timeout: float = rule(30.0, gt=0)  # seconds a client may leave an answer unread
    max_pipeline: int = rule(16, ge=1, le=1024)  # requests read ahead of their answers per connection
    max_batch_bytes: int | None = rule(None, ge=1024, before=_quantity)  # batch bytes; default from max_memory
    backend_timeout: float = rule(0.25, gt=0, le=60)  # deadline of one backend call, retries included
    breaker_threshold: int = rule(3, ge=1, le=1000)  # consecutive backend timeouts that open the circuit
    max_lock_ttl: float = rule(600.0, gt=0, le=86400)  # seconds; longer lock requests are shortened
    max_locks: int = rule(10000, ge=1, le=10_000_000)  # locks held by the memory store at once
    near_cache: NearCacheSettings = rule(factory=NearCacheSettings)


class Settings(_Section):
    cache: CacheSettings = rule(factory=CacheSettings)
    services: Services = rule(factory=Services)
    sidecar: SidecarSettings = rule(factory=SidecarSettings)
    state: dict[str, Any] | None = None

    @property
    def valkey(self) -> ValkeySettings:
        """The Valkey used for caching (``services.valkey.config``), defaults when absent."""
        return self.services.valkey.config if self.services.valkey else ValkeySettings()


class LoadedConfig:
    """Valid settings, the warnings about them (unknown keys) and where they were read."""

    __slots__ = ("settings", "warnings", "source")

    def __init__(self, settings: Settings, warnings: list[str], source: str):
        self.settings, self.warnings, self.source = settings, warnings, source


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


def parse_settings(raw: Any, environ: Mapping[str, str] | None = None, source: str = "<config>") -> LoadedConfig:
    """Validate an already-parsed YAML document."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with cache:, services:, sidecar: sections")
    substituted = substitute_env(raw, environ)
    errors: list[str] = []
    unknown: list[str] = []
    settings = Settings.parse(substituted, "", errors, unknown)
    if errors or settings is None:
        problems = "\n  ".join(errors)
        raise ConfigError(f"{source}: invalid configuration:\n  {problems}")
    warnings = [f"{source}: unknown key {key!r} is ignored" for key in unknown]
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
    import yaml  # only when a file is read: the embedded default needs no YAML parser

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_settings(raw, environ, source=str(path))
