"""The SDK's circuit breaker: a sidecar that stopped answering costs an agent one deadline, not one per call.

One breaker per socket path and process. A call that times out opens it; while
it is open every call fails at once with ``CacheUnavailable`` (so ``@cached``
functions simply run), and a daemon thread asks the sidecar's ``/healthz``
every ``PROBE_INTERVAL`` seconds; the first answer closes it. A refused or
missing socket does not open it: that failure costs nothing already.
"""

from __future__ import annotations

import logging
import os
import threading

from . import protocol, wire

log = logging.getLogger("agentcache")
PROBE_INTERVAL = 1.0


class Breaker:
    def __init__(self, socket_path: str, probe_timeout: float):
        self.socket_path = socket_path
        self.probe_timeout = probe_timeout
        self.open = False
        self._lock = threading.Lock()

    def trip(self) -> None:
        """Open the circuit (a call timed out) and start probing, unless it is open already."""
        with self._lock:
            if self.open:
                return
            self.open = True
        log.warning(
            "agentcache: the sidecar at %s did not answer in time; calls skip the cache until it answers again",
            self.socket_path,
        )
        threading.Thread(target=self._probe_until_answered, name="agentcache-breaker", daemon=True).start()

    def _probe_until_answered(self) -> None:
        stop = threading.Event()
        while not stop.wait(PROBE_INTERVAL):
            probe = wire.SyncConnection(self.socket_path, self.probe_timeout)
            try:
                answered = probe.request("GET", protocol.HEALTH_PATH, None, None).status == 200
            except wire.ConnectionFailed:
                answered = False
            finally:
                probe.close()
            if answered:
                self.open = False
                log.warning("agentcache: the sidecar at %s answers again", self.socket_path)
                return


_breakers: dict[tuple[int, str], Breaker] = {}
_registry_lock = threading.Lock()


def breaker_for(socket_path: str, probe_timeout: float) -> Breaker:
    """The breaker of ``socket_path`` in this process (a forked child gets its own)."""
    key = (os.getpid(), socket_path)
    with _registry_lock:
        breaker = _breakers.get(key)
        if breaker is None:
            breaker = _breakers[key] = Breaker(socket_path, probe_timeout)
        return breaker
