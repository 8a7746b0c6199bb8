"""``render_webhook_configuration`` (pure), and the chart's template rendering the same object."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from agentcache_operator import names
from agentcache_operator.injector.webhook import render_webhook_configuration
from tests.support.tools import require_tool

CHART = Path(__file__).resolve().parents[2] / "charts" / "agentcache"
PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_rendered_configuration_is_a_valid_object_with_the_contract():
    config = render_webhook_configuration("agentcache-injector", "agentcache", "agentcache-injector", PEM)
    kubernetes_validate.validate(config, "1.35", strict=True)
    (webhook,) = config["webhooks"]
    assert webhook["clientConfig"]["caBundle"] == base64.b64encode(PEM).decode()
    assert webhook["clientConfig"]["service"] == {
        "name": "agentcache-injector",
        "namespace": "agentcache",
        "path": "/mutate",
        "port": 443,
    }
    assert webhook["objectSelector"] == {"matchExpressions": [{"key": names.LABEL_CACHE, "operator": "Exists"}]}
    (excluded,) = webhook["namespaceSelector"]["matchExpressions"]
    assert excluded["operator"] == "NotIn"
    assert excluded["values"] == ["kube-system", "kube-public", "kube-node-lease", "agentcache"]
    assert webhook["sideEffects"] == "None" and webhook["reinvocationPolicy"] == "IfNeeded"
    assert webhook["admissionReviewVersions"] == ["v1"] and webhook["failurePolicy"] == "Fail"
    assert webhook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert webhook["timeoutSeconds"] == 5


def test_cert_manager_leaves_the_bundle_to_its_ca_injector():
    config = render_webhook_configuration(
        "w", "ns", "svc", None, failure_policy="Ignore", timeout_seconds=10, cert_manager=True, certificate="svc-cert"
    )
    kubernetes_validate.validate(config, "1.35", strict=True)
    assert config["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "ns/svc-cert"}
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    assert config["webhooks"][0]["failurePolicy"] == "Ignore"


def test_namespaced_install_matches_only_its_namespace():
    config = render_webhook_configuration("w", "ns", "svc", PEM, watch_namespace="ns")
    assert config["webhooks"][0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "ns"}}


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"failure_policy": "Maybe"}, "failure_policy 'Maybe' must be one of Fail, Ignore"),
        ({"timeout_seconds": 31}, "timeout_seconds 31 must be an integer from 1 to 30"),
        ({"port": 0}, "port 0"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        render_webhook_configuration("w", "ns", "svc", PEM, **kwargs)


def _chart_webhook(helm: str, *values: str) -> dict:
    args = [helm, "template", "ac", str(CHART), "--namespace", "agentcache"]
    for value in values:
        args += ["--set", value]
    output = subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout
    (config,) = [d for d in yaml.safe_load_all(output) if d and d.get("kind") == "MutatingWebhookConfiguration"]
    return config


@pytest.mark.parametrize(
    "values",
    [
        (),
        ("injector.failurePolicy=Ignore", "injector.timeoutSeconds=7"),
        ("namespaced=true",),
        ("certManager.enabled=true",),
    ],
)
def test_chart_template_renders_the_same_configuration(values):
    chart = _chart_webhook(require_tool("helm"), *values)
    webhook = chart["webhooks"][0]
    service = webhook["clientConfig"]["service"]
    ca = webhook["clientConfig"].get("caBundle")
    cert_manager = "certManager.enabled=true" in values
    ours = render_webhook_configuration(
        chart["metadata"]["name"],
        service["namespace"],
        service["name"],
        base64.b64decode(ca) if ca else None,
        failure_policy=webhook["failurePolicy"],
        timeout_seconds=webhook["timeoutSeconds"],
        cert_manager=cert_manager,
        certificate=service["name"],
        port=service["port"],
        watch_namespace="agentcache" if "namespaced=true" in values else None,
        labels=chart["metadata"]["labels"],
    )
    assert chart == ours
