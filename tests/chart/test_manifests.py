"""manifests/ is rendered from the chart by scripts/render-manifests.sh and must not go stale."""

from __future__ import annotations

import os
import subprocess

import yaml

from tests.support.tools import require_tool

from .helm import CHART, NAMESPACE, ROOT

SCRIPT = ROOT / "scripts" / "render-manifests.sh"
MANIFESTS = ROOT / "manifests"


def render(out) -> None:
    env = {**os.environ, "HELM": require_tool("helm")}
    result = subprocess.run([str(SCRIPT), str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr


def test_manifests_are_up_to_date(tmp_path):
    render(tmp_path)
    for name in ("crds.yaml", "install.yaml"):
        fresh = (tmp_path / name).read_text()
        committed = (MANIFESTS / name).read_text()
        assert committed == fresh, f"manifests/{name} is stale: run scripts/render-manifests.sh"


def test_install_manifest_is_complete_and_holds_no_secrets():
    objects = [d for d in yaml.safe_load_all((MANIFESTS / "install.yaml").read_text()) if d]
    assert objects[0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": objects[0]["metadata"]["labels"]},
    }
    kinds = {o["kind"] for o in objects}
    assert {
        "Deployment",
        "Service",
        "MutatingWebhookConfiguration",
        "ClusterRole",
        "PodDisruptionBudget",
        "ServiceAccount",
        "ConfigMap",
    } <= kinds
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}
    for obj in objects:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
    assert "PRIVATE KEY" not in (MANIFESTS / "install.yaml").read_text()
    assert "Secret" not in kinds


def test_crds_manifest_is_the_charts_crd():
    documents = [d for d in yaml.safe_load_all((MANIFESTS / "crds.yaml").read_text()) if d]
    sources = [yaml.safe_load(path.read_text()) for path in sorted((CHART / "crds").glob("*.yaml"))]
    assert documents == sources
