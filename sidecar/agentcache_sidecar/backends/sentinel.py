"""Valkey behind Sentinel: clients that ask the sentinels where the primary is and follow a failover.

Each new connection asks the sentinels for the primary's address; a connection to a primary
that was demoted (READONLY) or died is dropped, so the next request finds the promoted one.
Sentinel connections use the Valkey user and password (a managed cache's sidecar ACL user, which
its sentinels accept for these questions only) unless ``sentinel.password`` is given, and never
wait longer than ``socket_connect_timeout`` for a sentinel.
"""

from __future__ import annotations

from valkey.asyncio import Valkey
from valkey.asyncio.sentinel import Sentinel

from ..config import SentinelSettings, ValkeySettings


def primary_clients(sentinel: SentinelSettings, settings: ValkeySettings, pool_kwargs: dict) -> tuple[Valkey, Valkey]:
    """The client of the primary (at most ``max_connections``) and a probe client with a pool of its own."""
    sentinels = [(host, int(port)) for host, _, port in (a.rpartition(":") for a in sentinel.addresses)]
    timeout = settings.socket_connect_timeout
    own = (
        {"password": sentinel.password}
        if sentinel.password
        else {"username": pool_kwargs.get("username"), "password": pool_kwargs["password"]}
    )
    sentinel_kwargs = {
        **own,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    manager = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs, db=settings.db, **pool_kwargs)
    return (
        # no socket timeout on the data connections: ValkeyBackend bounds every exchange itself (bounds_itself)
        manager.master_for(sentinel.master_name, max_connections=settings.max_connections, socket_timeout=None),
        manager.master_for(sentinel.master_name),
    )
