"""Prometheus metrics of the sidecar (docs/design.md §5): the one place their names are defined.

Each app gets its own ``CollectorRegistry`` so several sidecars can live in one
process (tests) without clashing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SIZE_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)

REQUESTS_TOTAL = "agentcache_requests_total"
REQUEST_DURATION = "agentcache_request_duration_seconds"
HITS_TOTAL = "agentcache_hits_total"
MISSES_TOTAL = "agentcache_misses_total"
EVICTIONS_TOTAL = "agentcache_evictions_total"
KEYS = "agentcache_keys"
MEMORY_BYTES = "agentcache_memory_bytes"
BACKEND_UP = "agentcache_backend_up"
BACKEND_ERRORS_TOTAL = "agentcache_backend_errors_total"
VALUE_BYTES = "agentcache_value_bytes"
REJECTIONS_TOTAL = "agentcache_rejections_total"

EVICTION_REASONS = ("lru", "expired", "size", "corrupt")
BACKEND_OPS = (
    "get",
    "get_many",
    "set",
    "set_many",
    "delete",
    "delete_many",
    "delete_pattern",
    "list",
    "lock",
    "unlock",
    "stats",
)

SIDECAR_METRICS = (
    REQUESTS_TOTAL,
    REQUEST_DURATION,
    HITS_TOTAL,
    MISSES_TOTAL,
    EVICTIONS_TOTAL,
    KEYS,
    MEMORY_BYTES,
    BACKEND_UP,
    BACKEND_ERRORS_TOTAL,
    VALUE_BYTES,
    REJECTIONS_TOTAL,
)


def _base(name: str) -> str:
    """prometheus-client appends ``_total`` to counters itself."""
    return name.removesuffix("_total")


@dataclass
class SidecarMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            _base(REQUESTS_TOTAL), "Cache API requests by operation and result.", ["op", "result"], registry=r
        )
        self.duration = Histogram(
            REQUEST_DURATION, "Cache API request latency by operation.", ["op"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.hits = Counter(_base(HITS_TOTAL), "Reads that found a value.", registry=r)
        self.misses = Counter(_base(MISSES_TOTAL), "Reads that found nothing.", registry=r)
        self.evictions = Counter(_base(EVICTIONS_TOTAL), "Entries removed by the cache itself.", ["reason"], registry=r)
        self.keys = Gauge(KEYS, "Keys under this sidecar's prefix (sampled).", registry=r)
        self.memory = Gauge(MEMORY_BYTES, "Bytes held by the backend (sampled).", registry=r)
        self.backend_up = Gauge(BACKEND_UP, "1 when the configured backend answers, else 0.", registry=r)
        self.backend_errors = Counter(_base(BACKEND_ERRORS_TOTAL), "Backend failures by operation.", ["op"], registry=r)
        self.value_bytes = Histogram(VALUE_BYTES, "Sizes of values written.", buckets=SIZE_BUCKETS, registry=r)
        self.rejections = Counter(
            _base(REJECTIONS_TOTAL),
            "Connections, requests and stored values refused to keep the sidecar within its budget, by reason.",
            ["reason"],
            registry=r,
        )
        self._request_children: dict[tuple[str, str], tuple] = {}
        for reason in EVICTION_REASONS:  # series exist at 0 from the start, so rate() panels have data
            self.evictions.labels(reason)
        for op in BACKEND_OPS:
            self.backend_errors.labels(op)

    def observe_request(self, op: str, result: str, seconds: float) -> None:
        """Count one API request and its latency (label children cached: this is on every request's path)."""
        children = self._request_children.get((op, result))
        if children is None:
            children = (self.requests.labels(op, result), self.duration.labels(op))
            self._request_children[(op, result)] = children
        children[0].inc()
        children[1].observe(seconds)
