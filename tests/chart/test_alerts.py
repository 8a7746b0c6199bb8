"""The alert rules: checked and unit-tested by the real promtool, each alert both firing and not firing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support.tools import require_tool

from .helm import CHART

RULES = CHART / "alerts" / "agentcache.rules.yaml"
UNIT_TESTS = Path(__file__).with_name("alerts_test.yaml")
EXPECTED_ALERTS = {
    "AgentCacheLowHitRate",
    "AgentCacheBackendDown",
    "AgentCacheHighErrorRate",
    "AgentCacheHighLatency",
    "AgentCacheOperatorReconcileFailures",
}


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules():
    result = subprocess.run(
        [require_tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    result = subprocess.run(
        [require_tool("promtool"), "test", "rules", str(UNIT_TESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=UNIT_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_runbook_a_summary_and_a_severity():
    assert {rule["alert"] for rule in alerts()} == EXPECTED_ALERTS
    for rule in alerts():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["runbook"].strip() and rule["annotations"]["summary"].strip()
        assert "\n" not in rule["annotations"]["runbook"], "a runbook is one line"


def test_every_alert_is_unit_tested_both_firing_and_silent():
    cases = [case for group in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for case in group["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert fired == silent == EXPECTED_ALERTS
