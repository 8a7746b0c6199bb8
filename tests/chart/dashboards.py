"""The shipped Grafana dashboards, their queries, and the metric names they may use.

The names come from the metrics modules themselves (the one place they are defined):
``agentcache_sidecar.metrics.SidecarMetrics`` and ``agentcache_operator.metrics``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .helm import CHART

DASHBOARD_DIR = CHART / "dashboards"
METRIC_TOKEN = re.compile(r"\b(agentcache_[a-z0-9_]+|up)\b(?=\s*[{\[)]|\s*$)")


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    expr: str


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def all_dashboards() -> dict[str, dict]:
    return {path.stem: load(path) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(name: str, dashboard: dict) -> list[Query]:
    return [
        Query(name, panel["title"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def variables(dashboard: dict) -> dict[str, dict]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (identifiers followed by a selector or a range)."""
    return set(METRIC_TOKEN.findall(expr))


def exposed_series_names(families: list[tuple[str, str]]) -> set[str]:
    """Series names Prometheus stores for (name, type) metric families of prometheus-client."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    return {name + suffix for name, kind in families for suffix in suffixes[kind]}


def sidecar_series() -> set[str]:
    from agentcache_sidecar.metrics import SIDECAR_METRICS, SidecarMetrics

    families = [(family.name, family.type) for family in SidecarMetrics().registry.collect()]
    assert {name if kind != "counter" else name + "_total" for name, kind in families} == set(SIDECAR_METRICS)
    return exposed_series_names(families)


def operator_series() -> set[str]:
    from agentcache_operator import metrics

    collectors = [value for value in vars(metrics).values() if hasattr(value, "describe") and hasattr(value, "_name")]
    families = [(family.name, family.type) for collector in collectors for family in collector.describe()]
    return exposed_series_names(families)


def substitute(expr: str, values: dict[str, str], rate_interval: str) -> str:
    """What Grafana sends: variables replaced (``$name`` and ``${name}``) and $__rate_interval set."""
    expr = expr.replace("$__rate_interval", rate_interval)
    for name, value in sorted(values.items(), key=lambda item: -len(item[0])):
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr
