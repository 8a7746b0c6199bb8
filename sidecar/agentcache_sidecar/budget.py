"""The sidecar's memory budget: every buffer that a client's behaviour can grow is sized from ``max_memory``.

``max_memory`` is ``sidecar.max_memory``, else the container's cgroup limit,
else 1 GiB. What the process needs at rest (``BASELINE``: the interpreter and
its libraries) is set aside; of the rest, each of these gets its share and is
never exceeded, whatever clients do:

- ``body_bytes``: request bodies being read, all connections together
  (reserved from Content-Length when the headers arrive);
- ``answer_bytes``: answers written but not yet read by their clients;
- ``batch_bytes``: one batch request body, and twice that for the objects its
  JSON parses into (one large batch at a time);
- ``store_bytes``: values held in memory (memory backend, memory fallback);
- ``connections``: open connections (a socket, a parser and its buffers each).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from .config import MiB, Settings, cgroup_memory_limit

BASELINE = 56 * MiB
DEFAULT_MAX_MEMORY = 1024 * MiB
CONNECTION_COST = 64 * 1024
MAX_DEFAULT_CONNECTIONS = 4096
FD_RESERVE = 64


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


@dataclass(frozen=True)
class Budget:
    max_memory: int
    body_bytes: int
    answer_bytes: int
    batch_bytes: int
    store_bytes: int
    connections: int

    @classmethod
    def of(cls, settings: Settings, fd_limit: int | None = None) -> Budget:
        side = settings.sidecar
        total = side.max_memory or cgroup_memory_limit() or DEFAULT_MAX_MEMORY
        usable = max(total - BASELINE, total // 4)
        share = usable // 6
        if fd_limit is None:
            fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        connections = side.max_connections or max(
            16, min(fd_limit - FD_RESERVE, usable // CONNECTION_COST, MAX_DEFAULT_CONNECTIONS)
        )
        return cls(
            max_memory=total,
            body_bytes=max(share, side.max_value_bytes + 64 * 1024),
            answer_bytes=share,
            batch_bytes=side.max_batch_bytes or max(MiB, share),
            store_bytes=min(settings.cache.max_memory_bytes, usable // 3),
            connections=connections,
        )
