"""``agentcache validate-config``: AgentUp's validation script as a command, with the sidecar's own checks.

The configuration is loaded exactly as the sidecar loads it; for Valkey the
check pings the server and round-trips a test key under the key_prefix, for
the file backend it checks that the storage directory is writable.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import valkey
from valkey.cluster import ValkeyCluster

from agentcache.cli import FAIL, OK, SKIP, WARN, say
from agentcache.protocol import KEY_MARK

from .backends.near import INVALIDATE_CHANNEL
from .backends.valkey import pool_kwargs
from .config import ConfigError, Settings, load_config


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _check_valkey(settings: Settings) -> bool:
    """Ping the configured Valkey and round-trip a test key under the key_prefix (AgentUp's validation script)."""
    config = settings.valkey
    shown = _redact(config.url)
    kwargs = {**pool_kwargs(config), "client_name": "agentcache-validate-config"}
    try:
        if config.cluster:
            client = ValkeyCluster.from_url(config.url, **kwargs)
        else:
            client = valkey.Valkey.from_url(config.url, db=config.db, **kwargs)
        with client:
            client.ping()
            say(f"{OK} Valkey connection successful: {shown} (db {config.db})")
            test_key = f"{settings.cache.key_prefix}config_test:{secrets.token_hex(6)}"
            expected = secrets.token_hex(8).encode()
            client.set(test_key, expected, ex=60)
            value = client.get(test_key)
            client.unlink(test_key)  # UNLINK: the only delete a managed cache's sidecar user may run
    except Exception as exc:  # every client failure is a failed check, reported in one line
        say(f"{FAIL} Valkey connection failed: {shown}: {str(exc) or type(exc).__name__}")
        return False
    if value != expected:
        say(f"{FAIL} Cache operations failed: wrote {expected!r} to {test_key}, read back {value!r}")
        return False
    say(f"{OK} Cache operations working (set/get/delete of {test_key})")
    _check_near_cache(settings, kwargs)
    return True


def _check_near_cache(settings: Settings, kwargs: dict) -> None:
    """Whether Valkey will track the prefix for the near cache (``backends/near.py``): a warning, never a
    failure, since the sidecar then serves without one."""
    config = settings.valkey
    if not settings.sidecar.near_cache.enabled:
        say(f"{SKIP} Near cache off (sidecar.near_cache.enabled: false)")
        return
    if config.cluster:
        say(f"{WARN} Near cache: not kept with a Valkey Cluster; every read goes to the cluster")
        return
    if config.sentinel:
        say(f"{SKIP} Near cache check skipped: the sidecar tracks through the primary Sentinel names")
        return
    client = valkey.Valkey.from_url(config.url, db=config.db, single_connection_client=True, **kwargs)
    try:
        with client:
            client_id = client.execute_command("CLIENT", "ID")
            prefix = (settings.cache.key_prefix + KEY_MARK).encode()
            client.execute_command("CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX", prefix)
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(INVALIDATE_CHANNEL)
                pubsub.get_message(timeout=config.socket_timeout)
            finally:
                pubsub.close()
    except Exception as exc:  # a refusal (ACL, old server) leaves the sidecar without a near cache
        say(f"{WARN} Near cache will be off: Valkey refused client tracking ({str(exc) or type(exc).__name__})")
        return
    say(f"{OK} Near cache: Valkey tracks changes under {settings.cache.key_prefix!r} (CLIENT TRACKING BCAST)")


def _check_storage_dir(storage_dir: str) -> bool:
    path = Path(storage_dir).resolve()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        say(f"{FAIL} File cache directory is not writable: {path} ({existing} is not a writable directory)")
        return False
    say(f"{OK} File cache directory is writable: {path}" + ("" if existing == path else " (will be created)"))
    return True


def validate_config(file: str, connect: bool = True) -> int:
    """Check ``file`` as the sidecar would load it; with ``connect``, reach its Valkey or storage directory.

    One line per finding on stdout; the exit status is 0 when the sidecar would start and work.
    """
    try:
        loaded = load_config(file)
    except ConfigError as exc:
        say(f"{FAIL} {exc}")
        return 1
    settings = loaded.settings
    cache = settings.cache
    say(f"{OK} Configuration is valid: {file}")
    for warning in loaded.warnings:
        say(f"{WARN} {warning}")
    say(f"{OK} Cache backend: {cache.backend} (default_ttl {cache.default_ttl:g} s, key_prefix {cache.key_prefix!r})")
    if not cache.enabled:
        say(f"{WARN} cache.enabled is false: every get misses and every set is dropped")
    if cache.backend == "memory":
        say(
            f"{OK} Memory cache configured: max_size {cache.max_size} items, cleanup every {cache.cleanup_interval:g} s"
        )
        return 0
    if cache.backend == "file":
        say(f"{OK} File cache configured: {cache.storage_dir} (max_file_size {cache.max_file_size} bytes)")
        if not connect:
            say(f"{SKIP} storage directory check skipped (--no-connect)")
            return 0
        return 0 if _check_storage_dir(cache.storage_dir) else 1
    if settings.services.valkey is None:
        say(f"{WARN} services.valkey is not configured; using {settings.valkey.url}")
    if not connect:
        say(f"{SKIP} Valkey connection check skipped (--no-connect): {_redact(settings.valkey.url)}")
        return 0
    return 0 if _check_valkey(settings) else 1
