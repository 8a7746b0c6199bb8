"""The Grafana dashboards, checked without Grafana: schema conventions, variables, metric names, layout."""

from __future__ import annotations

import re

import pytest

from .dashboards import all_dashboards, metric_names, operator_series, panels, queries, sidecar_series, variables

DASHBOARDS = all_dashboards()
SIDECAR_DASHBOARDS = ("overview", "sidecar")


def test_the_three_dashboards_exist_with_stable_unique_uids():
    assert set(DASHBOARDS) == {"overview", "sidecar", "operator"}
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == 3 and all(re.fullmatch(r"agentcache-[a-z]+", uid) for uid in uids)
    for dashboard in DASHBOARDS.values():
        assert dashboard["schemaVersion"] == 42, "Grafana's current schema (tools/dashlint checks it strictly)"
        assert dashboard["editable"] is False, "provisioned dashboards are changed in git, not in Grafana"
        assert dashboard["id"] is None, "provisioned dashboards must not carry a database id"
        assert "agentcache" in dashboard["tags"] and dashboard["title"].startswith("AgentCache")


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_uses_the_datasource_variable(name):
    dashboard = DASHBOARDS[name]
    datasource = variables(dashboard)["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_template_variables_chain_and_filter_every_query(name):
    dashboard = DASHBOARDS[name]
    expected = (
        ["datasource", "namespace", "cache", "pod"]
        if name in SIDECAR_DASHBOARDS
        else ["datasource", "namespace", "pod"]
    )
    assert list(variables(dashboard)) == expected
    for variable in list(variables(dashboard).values())[1:]:
        assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert variable["includeAll"] and variable["multi"] and variable["allValue"] == ".*"
        assert variable["definition"].startswith("label_values(")
    filters = [f'{v}=~"${v}"' for v in expected[1:]]
    for query in queries(name, dashboard):
        selectors = re.findall(r"\b(?:agentcache_[a-z_]+|up)\{([^}]*)\}", query.expr)
        assert selectors, query
        for selector in selectors:
            for needed in filters:
                assert needed in selector, f"{query.panel}: {selector} lacks {needed}"


def test_queries_use_only_metrics_the_code_exports():
    sidecar, operator = sidecar_series(), operator_series()
    for name, dashboard in DASHBOARDS.items():
        known = sidecar if name in SIDECAR_DASHBOARDS else operator | {"up"}
        for query in queries(name, dashboard):
            used = metric_names(query.expr)
            assert used and used <= known, f"{name}/{query.panel}: unknown {used - known}"


def test_overview_and_operator_show_what_operators_ask_for():
    overview = " ".join(q.expr for q in queries("overview", DASHBOARDS["overview"]))
    for quantile in ("0.5", "0.95", "0.99"):
        assert (
            f"histogram_quantile({quantile}, sum by (le) (rate(agentcache_request_duration_seconds_bucket" in overview
        )
    assert "sum by (op, result) (rate(agentcache_requests_total" in overview
    for metric in (
        "agentcache_hits_total",
        "agentcache_misses_total",
        "agentcache_backend_errors_total",
        "agentcache_evictions_total",
        "agentcache_keys",
        "agentcache_memory_bytes",
        "agentcache_backend_up",
    ):
        assert metric in overview
    operator = " ".join(q.expr for q in queries("operator", DASHBOARDS["operator"]))
    assert "sum by (phase) (agentcache_operator_caches" in operator
    assert "sum by (result) (rate(agentcache_operator_reconciles_total" in operator
    assert 'result!="ok"' in operator and "agentcache_operator_reconcile_duration_seconds_bucket" in operator


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_do_not_overlap_and_have_unique_ids(name):
    taken: set[tuple[int, int]] = set()
    ids = []
    for panel in panels(DASHBOARDS[name]):
        ids.append(panel["id"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
    assert len(ids) == len(set(ids))
