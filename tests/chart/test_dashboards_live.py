"""Every sidecar dashboard query, run by a real Prometheus scraping real sidecars under load, returns data.

Three ``agentcache-sidecar`` processes serve traffic: a memory cache small enough to evict,
a Valkey-backed cache (real valkey-server) whose Valkey is killed midway, so backend
errors and ``backend_up == 0`` are real, and one whose Valkey stays up, so its near cache
serves. Prometheus scrapes them every second; each target gets the static labels
(namespace, cache, pod) that the chart's PodMonitor adds in a cluster.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import threading
import time
from urllib.parse import quote

import pytest

from tests.support.valkey import ValkeyProcess

from .dashboards import all_dashboards, queries, substitute, variables
from .prometheus import PrometheusProcess

pytestmark = pytest.mark.e2e
RATE_INTERVAL = "5s"  # Grafana's $__rate_interval for a 1 s scrape interval is at least 4 scrapes
TARGETS = {
    "memory": {"namespace": "agents", "cache": "memory-cache", "pod": "agent-memory-0"},
    "valkey": {"namespace": "agents", "cache": "llm-cache", "pod": "agent-valkey-0"},
    "near": {"namespace": "agents", "cache": "near-cache", "pod": "agent-near-0"},
}
QUERY_DEADLINE = 30.0


class Load:
    """Mixed cache traffic against several sidecars from a background thread until stopped."""

    def __init__(self, sidecars):
        self.sidecars = sidecars
        self.stopping = threading.Event()
        self.requests = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _worker(self, sidecar, seed: int) -> None:
        rng = random.Random(seed)
        async with sidecar.session() as session:
            while not self.stopping.is_set():
                key = quote(f"user:{rng.randrange(120)}:answer", safe="")
                roll = rng.random()
                if roll < 0.35:
                    body = b"x" * rng.choice((40, 600, 3000, 20000))
                    request = session.put(f"/v1/keys/{key}?ttl={rng.choice((1, 30, 0))}", data=body)
                elif roll < 0.8:
                    request = session.get(f"/v1/keys/{key}")
                elif roll < 0.87:
                    request = session.head(f"/v1/keys/{key}")
                elif roll < 0.92:
                    request = session.delete(f"/v1/keys/{key}")
                elif roll < 0.96:
                    request = session.post("/v1/batch/get", json={"keys": [f"user:{i}:answer" for i in range(5)]})
                else:
                    request = session.post("/v1/batch/set", json={"items": {"batch:a": {"n": 1}}, "ttl": 5})
                async with request as response:
                    await response.read()
                    assert response.status < 500, await response.text()
                self.requests += 1
                await asyncio.sleep(0.002)

    async def _run(self) -> None:
        await asyncio.gather(*(self._worker(sidecar, seed) for seed, sidecar in enumerate(self.sidecars * 2)))

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


def has_data(reply: dict) -> bool:
    """A successful query with at least one sample that is a number (NaN from 0/0 is not data)."""
    if reply["status"] != "success":
        return False
    result = reply["data"]["result"]
    values = [sample["value"][1] for sample in result] if reply["data"]["resultType"] == "vector" else []
    return any(not math.isnan(float(value)) for value in values)


def test_every_sidecar_dashboard_query_returns_data_from_real_sidecars(tmp_path, sidecar_factory):
    valkey = ValkeyProcess(tmp_path / "valkey").start()
    steady = ValkeyProcess(tmp_path / "valkey-steady").start()  # stays up: the near cache keeps serving
    try:
        memory = sidecar_factory(
            {
                "cache": {
                    "backend": "memory",
                    "max_size": 60,
                    "cleanup_interval": 0.5,
                    "key_prefix": "agents:memory-cache:",
                }
            },
            name="memory",
        )
        backed = sidecar_factory(
            {
                "cache": {"backend": "valkey", "key_prefix": "agents:llm-cache:"},
                "services": {
                    "valkey": {"config": {"url": valkey.url, "socket_timeout": 0.5, "socket_connect_timeout": 0.5}}
                },
                "sidecar": {"fallback": "memory"},
            },
            name="valkey",
        )
        near = sidecar_factory(
            {
                "cache": {"backend": "valkey", "key_prefix": "agents:near-cache:"},
                "services": {"valkey": {"config": {"url": steady.url}}},
            },
            name="near",
        )
        prometheus = PrometheusProcess(
            tmp_path / "prometheus",
            [
                (f"127.0.0.1:{memory.metrics_port}", TARGETS["memory"]),
                (f"127.0.0.1:{backed.metrics_port}", TARGETS["valkey"]),
                (f"127.0.0.1:{near.metrics_port}", TARGETS["near"]),
            ],
        ).start()
        try:
            with Load([memory, backed, near]) as load:
                time.sleep(3)
                valkey.stop()  # a real outage: the Valkey-backed sidecar counts an error and falls back
                results = run_until_every_query_has_data(prometheus)
            assert load.requests > 500
        finally:
            prometheus.stop()
    finally:
        valkey.stop()
        steady.stop()

    empty = {f"{q.dashboard}/{q.panel}: {expr}": reply for q, expr, reply in results if not has_data(reply)}
    assert not empty, f"{len(empty)} queries returned no data: {empty}"
    assert len(results) == sum(len(queries(n, d)) for n, d in all_dashboards().items() if n != "operator")


def run_until_every_query_has_data(prometheus: PrometheusProcess) -> list:
    """Run every panel query of the sidecar dashboards (variables at All) until each has data or time runs out."""
    dashboards = {name: d for name, d in all_dashboards().items() if name != "operator"}
    pending = [
        (q, substitute(q.expr, {"namespace": ".*", "cache": ".*", "pod": ".*"}, RATE_INTERVAL))
        for name, dashboard in dashboards.items()
        for q in queries(name, dashboard)
    ]
    done = []
    deadline = time.monotonic() + QUERY_DEADLINE
    while pending and time.monotonic() < deadline:
        still = []
        for query, expr in pending:
            reply = prometheus.query(expr)
            assert reply["status"] == "success", f"{query.panel}: {expr} does not parse: {reply}"
            (done if has_data(reply) and backend_outage_seen(prometheus) else still).append((query, expr, reply))
        pending = [(query, expr) for query, expr, _ in still]
        if pending:
            time.sleep(0.5)
    check_variables(prometheus, dashboards)
    return done + [(query, expr, prometheus.query(expr)) for query, expr in pending]


def backend_outage_seen(prometheus: PrometheusProcess) -> bool:
    """Prometheus has scraped the outage: backend errors and a down backend for llm-cache."""
    down = prometheus.query('agentcache_backend_up{cache="llm-cache"} == 0')
    errors = prometheus.query('agentcache_backend_errors_total{cache="llm-cache"} > 0')
    return bool(down["data"]["result"]) and bool(errors["data"]["result"])


def check_variables(prometheus: PrometheusProcess, dashboards: dict) -> None:
    """Each label_values(metric, label) variable lists the labels the targets carry."""
    for dashboard in dashboards.values():
        for name, variable in variables(dashboard).items():
            if variable["type"] != "query":
                continue
            match = re.match(r"label_values\((.+), (\w+)\)$", variable["definition"])
            assert match and match.group(2) == name
            selector = substitute(match.group(1), {"namespace": ".*", "cache": ".*"}, RATE_INTERVAL)
            expected = sorted({labels[name] for labels in TARGETS.values()})
            assert prometheus.label_values(name, selector) == expected
