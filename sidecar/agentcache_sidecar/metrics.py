"""Prometheus metrics of the sidecar (docs/design.md §5): the one place their names are defined.

Each app gets its own ``CollectorRegistry`` so several sidecars can live in one
process (tests) without clashing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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
NEAR_HITS_TOTAL = "agentcache_near_cache_hits_total"
NEAR_MISSES_TOTAL = "agentcache_near_cache_misses_total"
NEAR_INVALIDATIONS_TOTAL = "agentcache_near_cache_invalidations_total"
NEAR_RESETS_TOTAL = "agentcache_near_cache_resets_total"
NEAR_ENTRIES = "agentcache_near_cache_entries"
NEAR_BYTES = "agentcache_near_cache_bytes"
NEAR_LIVE = "agentcache_near_cache_live"

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
    NEAR_HITS_TOTAL,
    NEAR_MISSES_TOTAL,
    NEAR_INVALIDATIONS_TOTAL,
    NEAR_RESETS_TOTAL,
    NEAR_ENTRIES,
    NEAR_BYTES,
    NEAR_LIVE,
)


def _base(name: str) -> str:
    """prometheus-client appends ``_total`` to counters itself."""
    return name.removesuffix("_total")


NearCacheStats = Callable[[], "dict | None"]


class NearCacheCollector(Collector):
    """The near cache's figures (``backends/near.py``), read when scraped; zeros when there is none."""

    def __init__(self) -> None:
        self.source: NearCacheStats = lambda: None

    def collect(self) -> Iterator[Metric]:
        stats = self.source() or {}
        for name, key, text in (
            (NEAR_HITS_TOTAL, "hits", "Reads served from the near cache."),
            (NEAR_MISSES_TOTAL, "misses", "Reads the near cache did not hold (sent to Valkey)."),
            (NEAR_INVALIDATIONS_TOTAL, "invalidations", "Invalidation messages received from Valkey."),
            (NEAR_RESETS_TOTAL, "resets", "Times the near cache was emptied because Valkey could not be heard."),
        ):
            yield CounterMetricFamily(_base(name), text, value=stats.get(key, 0))
        yield GaugeMetricFamily(NEAR_ENTRIES, "Entries held by the near cache.", value=stats.get("entries", 0))
        yield GaugeMetricFamily(NEAR_BYTES, "Bytes held by the near cache.", value=stats.get("bytes", 0))
        yield GaugeMetricFamily(
            NEAR_LIVE,
            "1 while the near cache serves (Valkey's invalidations heard).",
            value=1 if stats.get("live") else 0,
        )


class ReadsCollector(Collector):
    """Hits and misses, read when scraped from the counts the cache service keeps anyway (a counter of
    our own per read would take prometheus-client's lock twice on every request)."""

    def __init__(self) -> None:
        self.source: Callable[[], tuple[int, int]] = lambda: (0, 0)

    def collect(self) -> Iterator[Metric]:
        hits, misses = self.source()
        yield CounterMetricFamily(_base(HITS_TOTAL), "Reads that found a value.", value=hits)
        yield CounterMetricFamily(_base(MISSES_TOTAL), "Reads that found nothing.", value=misses)


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
        self.reads = ReadsCollector()
        r.register(self.reads)
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
        self.near_cache = NearCacheCollector()
        r.register(self.near_cache)
        self._request_children: dict[tuple[str, str], tuple] = {}
        for reason in EVICTION_REASONS:  # series exist at 0 from the start, so rate() panels have data
            self.evictions.labels(reason)
        for op in BACKEND_OPS:
            self.backend_errors.labels(op)

    def watch_reads(self, source: Callable[[], tuple[int, int]]) -> None:
        self.reads.source = source

    def watch_near_cache(self, source: NearCacheStats) -> None:
        self.near_cache.source = source

    def observe_request(self, op: str, result: str, seconds: float) -> None:
        """Count one API request and its latency (label children cached: this is on every request's path)."""
        children = self._request_children.get((op, result))
        if children is None:
            children = (self.requests.labels(op, result), self.duration.labels(op))
            self._request_children[(op, result)] = children
        children[0].inc()
        children[1].observe(seconds)
