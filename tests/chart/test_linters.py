"""The linters of `make lint` on what we ship, and proof that each one catches what it is for.

kube-score (scripts/kube-score.sh) on the chart, install.yaml and the operator's children;
dashlint (tools/dashlint, the rules of Grafana's dashboard-linter) on the dashboards;
promtool's linter on the alert rules.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tools import require_tool

from .helm import CHART, ROOT

DASHLINT_SOURCE = ROOT / "tools" / "dashlint"
GOOD_DASHBOARD = DASHLINT_SOURCE / "testdata" / "good.json"

BAD_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec:
      containers:
        - name: app
          image: example/app:latest
          securityContext: {privileged: true}
"""


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_kube_score_finds_nothing_in_what_we_ship():
    require_tool("kube-score"), require_tool("helm")
    result = run("bash", ROOT / "scripts" / "kube-score.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no findings" in result.stdout


def test_kube_score_catches_a_bad_deployment(tmp_path):
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(BAD_DEPLOYMENT)
    result = run(require_tool("kube-score"), "score", "--kubernetes-version", "v1.35", "-o", "ci", manifest)
    assert result.returncode == 1
    for finding in (
        "Image with latest tag",
        "Memory limit is not set",
        "The container is privileged",
        "The pod does not have a matching NetworkPolicy",
        "The pod has a container with a writable root filesystem",
    ):
        assert finding in result.stdout, result.stdout


def dashlint(*args: str | Path) -> subprocess.CompletedProcess:
    return run(require_tool("dashlint"), *args)


def test_dashlint_passes_the_shipped_dashboards_with_reasoned_exceptions():
    result = dashlint("-strict", *sorted((CHART / "dashboards").glob("*.json")))
    assert result.returncode == 0, result.stdout + result.stderr
    config = (CHART / "dashboards" / ".lint").read_text()
    assert config.count("reason:") == 4, "every exclusion gives its reason"


def bad_dashboard() -> dict:
    """good.json with one fault for each rule."""
    d = json.loads(GOOD_DASHBOARD.read_text())
    d["__inputs"] = []  # dashboard-schema-rule: an export-only field
    d["uid"] = "not a uid"  # dashboard-uid-rule
    d["editable"] = True  # uneditable-dashboard
    variables = {v["name"]: v for v in d["templating"]["list"]}
    variables["datasource"]["name"] = "ds"  # template-datasource-rule
    d["templating"]["list"] = [v for v in d["templating"]["list"] if v["name"] != "job"]  # template-job-rule
    instance = variables["instance"]
    instance["allValue"] = ".*"  # template-instance-rule
    instance["refresh"] = 1  # template-on-time-change-reload-rule
    instance["query"]["query"] = "label_values(up{job=~}, instance)"  # template-label-promql-rule
    row, stat, timeseries = d["panels"]
    del stat["description"]  # panel-title-description-rule
    del stat["fieldConfig"]["defaults"]["unit"]  # panel-units-rule
    # target-counter-agg-rule, target-job-rule, target-instance-rule:
    stat["targets"][0]["expr"] = 'sum(http_requests_total{instance="x"})'
    timeseries["datasource"] = {"type": "prometheus", "uid": "prom"}  # panel-datasource-rule
    fixed_range, broken = copy.deepcopy(timeseries["targets"][0]), copy.deepcopy(timeseries["targets"][0])
    fixed_range["expr"] = 'sum(rate(http_requests_total{job=~"$job", instance=~"$instance"}[5m]))'
    broken["expr"], broken["refId"] = "sum(rate(", "B"  # target-promql-rule
    timeseries["targets"] = [fixed_range, broken]  # target-rate-interval-rule
    empty = copy.deepcopy(timeseries)
    empty.update(id=4, title="Empty", targets=[])  # panel-no-targets-rule
    d["panels"].append(empty)
    return d


def test_dashlint_fires_every_rule_on_a_bad_dashboard(tmp_path):
    rules = {line.split("\t")[0] for line in dashlint("rules").stdout.splitlines()}
    assert len(rules) == 17
    good = dashlint("-strict", "-config", tmp_path / "none", GOOD_DASHBOARD)
    assert good.returncode == 0, good.stdout
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad_dashboard()))
    result = dashlint("-strict", path)
    assert result.returncode == 1
    fired = {line.split()[1].rstrip(":") for line in result.stdout.splitlines() if line.startswith("[")}
    assert fired == rules, f"did not fire: {rules - fired}"


def test_dashlint_refuses_an_exclusion_without_reason_or_finding(tmp_path):
    (tmp_path / "d.json").write_text(GOOD_DASHBOARD.read_text())
    (tmp_path / ".lint").write_text("exclusions:\n  panel-units-rule:\n")
    result = dashlint(tmp_path / "d.json")
    assert result.returncode == 1 and "no reason given" in result.stderr + result.stdout
    (tmp_path / ".lint").write_text("exclusions:\n  panel-units-rule:\n    reason: none needed\n")
    result = dashlint(tmp_path / "d.json")
    assert result.returncode == 1 and "matches no finding" in result.stdout


@pytest.mark.timeout(600)
def test_dashlint_go_tests():
    """Each rule's Go tests: a case that fires it and cases it allows; the .lint semantics."""
    result = run(require_tool("go"), "test", "./...", cwd=DASHLINT_SOURCE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_lint_catches_duplicate_rules(tmp_path):
    rule = {"record": "job:up:sum", "expr": "sum by (job) (up)"}
    (tmp_path / "dup.yaml").write_text(json.dumps({"groups": [{"name": "g", "rules": [rule, rule]}]}))
    result = run(require_tool("promtool"), "check", "rules", "--lint=all", "--lint-fatal", tmp_path / "dup.yaml")
    assert result.returncode == 3, result.stdout + result.stderr
    shipped = run(
        require_tool("promtool"), "check", "rules", "--lint=all", "--lint-fatal", *CHART.glob("alerts/*.yaml")
    )
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
