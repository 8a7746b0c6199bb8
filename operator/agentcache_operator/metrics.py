"""The operator's Prometheus metrics (DESIGN §5)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from .status import PHASES

RECONCILES = Counter(
    "agentcache_operator_reconciles_total",
    "Reconciles of AgentCache resources by result (ok, failed: spec cannot be honoured, error: API fault).",
    ["result"],
)
RECONCILE_DURATION = Histogram(
    "agentcache_operator_reconcile_duration_seconds",
    "Time to reconcile one AgentCache.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CACHES = Gauge("agentcache_operator_caches", "AgentCache resources by phase.", ["phase"])
LEADER = Gauge("agentcache_operator_leader", "1 while this operator process holds the leader Lease and reconciles.")


class PhaseBook:
    """The last phase of every cache, exported as ``agentcache_operator_caches{phase}``."""

    def __init__(self) -> None:
        self._phases: dict[tuple[str, str], str] = {}
        self._export()

    def set(self, key: tuple[str, str], phase: str) -> None:
        self._phases[key] = phase
        self._export()

    def forget(self, key: tuple[str, str]) -> None:
        self._phases.pop(key, None)
        self._export()

    def _export(self) -> None:
        for phase in PHASES:
            CACHES.labels(phase).set(sum(1 for p in self._phases.values() if p == phase))
