"""Tenant isolation on Valkey: prefixes that never nest on a shared server, and an ACL user per cache.

- ``prefix_conflict``: two AgentCaches whose keys share one external Valkey and db
  must not have nesting prefixes (``a:`` and ``a:b:``): the wider one's sidecar
  could read, list and clear the other's keys. The operator refuses the cache
  (status ``Failed``) with a message naming the other one.
- ``acl_rule``: a managed Valkey gets a user for its sidecars whose keys are
  ``<prefix>*`` and whose commands are only those the sidecar sends; the
  ``default`` user (probes, replication, cluster bootstrap) keeps the admin
  password, which sidecars never see.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from .common import Cache, SpecError

SIDECAR_COMMANDS = (
    "get",
    "set",
    "mget",
    "unlink",
    "scan",
    "ping",
    "info",
    "eval",
    "evalsha",
    "select",
    "client|setname",
    "client|id",
    "client|tracking",
    "subscribe",
    "cluster|slots",
    "cluster|shards",
    "command",
    "readonly",
    "asking",
)
"""What the sidecar's Valkey client sends (data, scans, the lock-release script, memory stats, cluster
discovery, the near cache's tracking of its prefix on ``TRACKING_CHANNEL``); never KEYS, FLUSHALL,
FLUSHDB, CONFIG, DEBUG, ACL or any admin command."""


TRACKING_CHANNEL = "__redis__:invalidate"
"""The only channel a sidecar may subscribe to: where Valkey sends its near cache's invalidations."""


def acl_user(cache: Cache) -> str:
    """The Valkey user of the cache's sidecars."""
    return f"agentcache-{cache.name}"


def acl_rule(prefix: str) -> str:
    """The ACL rules (``ACL SETUSER``/``user`` syntax, without the user name and password) of a sidecar
    confined to ``prefix``; a prefix holding whitespace or glob characters cannot be written as a pattern."""
    if not prefix or any(ch.isspace() or ch in "*?[]\\\"'" for ch in prefix):
        raise SpecError(
            f"spec.keyPrefix {prefix!r} cannot be a Valkey ACL key pattern: use a non-empty prefix "
            "without spaces, quotes or glob characters (* ? [ ] \\)"
        )
    return " ".join(
        [
            "on",
            "resetkeys",
            f"~{prefix}*",
            "resetchannels",
            f"&{TRACKING_CHANNEL}",
            "-@all",
            *(f"+{command}" for command in SIDECAR_COMMANDS),
        ]
    )


def _server(cache: Cache) -> tuple[str, str, int, int] | None:
    """(scheme, host or socket path, port, db) of an external Valkey; None for any other backend."""
    if cache.spec["backend"] != "valkey" or cache.valkey["mode"] != "external":
        return None
    parts = urlsplit(cache.valkey.get("url") or "")
    scheme = "unix" if parts.scheme == "unix" else "tcp"
    where = parts.path if scheme == "unix" else (parts.hostname or "").lower()
    return scheme, where, parts.port or 6379, int(cache.valkey["db"])


def prefix_conflict(cache: Cache, others: Iterable[Cache]) -> str | None:
    """Why ``cache`` cannot share its external Valkey with one of ``others``, or None when it can."""
    mine = _server(cache)
    if mine is None:
        return None
    prefix = cache.key_prefix
    for other in others:
        if (other.namespace, other.name) == (cache.namespace, cache.name) or _server(other) != mine:
            continue
        theirs = other.key_prefix
        if prefix.startswith(theirs) or theirs.startswith(prefix):
            relation = (
                "is the same as" if prefix == theirs else "nests" if theirs.startswith(prefix) else "is nested in"
            )
            return (
                f"key prefix {prefix!r} {relation} the prefix {theirs!r} of AgentCache "
                f"{other.namespace}/{other.name} on the same Valkey ({cache.valkey['url']}, db {mine[3]}): "
                "one cache could read and clear the other's keys; choose spec.keyPrefix values that do not "
                "start with one another"
            )
    return None
