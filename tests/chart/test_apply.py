"""The rendered chart applied with the real kubectl to a Kubernetes API creates every object.

The API is the session's ``kube`` (the local control plane of scripts/cluster.sh, or the
cluster $KUBECONFIG names). cert-manager's and the Prometheus Operator's CRDs cannot be
downloaded here: on the local control plane, minimal stand-in CRDs (same group, kind and
scope, schema left open) let their objects be created; on another cluster the objects whose
CRDs are not installed are left out.
"""

from __future__ import annotations

import json

import pytest
import yaml

from .helm import CHART, RELEASE, VALUE_FILES

CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}
FOREIGN_CRDS = {  # group -> [(kind, plural)] of the CRDs the optional objects need
    "cert-manager.io": [("Issuer", "issuers"), ("Certificate", "certificates")],
    "monitoring.coreos.com": [
        ("ServiceMonitor", "servicemonitors"),
        ("PodMonitor", "podmonitors"),
        ("PrometheusRule", "prometheusrules"),
    ],
}


def stand_in_crd(group: str, kind: str, plural: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def crds_installed(kube):
    """The chart's own CRDs, and stand-ins for the foreign ones on the local control plane."""
    kube.kubectl("apply", "--validate=false", "-f", str(CHART / "crds"))
    if kube.is_local:
        kube.apply(
            [stand_in_crd(group, kind, plural) for group, kinds in FOREIGN_CRDS.items() for kind, plural in kinds]
        )


def cleanup_cluster_scoped(kube, objects: list[dict]) -> None:
    cluster_scoped = [o for o in objects if o["kind"] in CLUSTER_SCOPED]
    if cluster_scoped:
        kube.kubectl(
            "delete",
            "--ignore-not-found",
            "--wait=false",
            "-f",
            "-",
            input=yaml.safe_dump_all(cluster_scoped),
            check=False,
        )


@pytest.mark.parametrize(
    "values", [(), *((name,) for name in VALUE_FILES)], ids=lambda v: v[0].removesuffix(".yaml") if v else "defaults"
)
def test_kubectl_apply_creates_every_rendered_object(kube, kube_namespace, crds_installed, helm, values):
    objects = helm.render(values, namespace=kube_namespace)
    for obj in objects:  # dashboards go to the release namespace here: the test owns no other one
        if obj["kind"] == "ConfigMap":
            obj["metadata"]["namespace"] = kube_namespace
    if not kube.is_local:  # a cluster without cert-manager / Prometheus Operator: check the rest
        foreign = {o["apiVersion"].split("/")[0] for o in objects} & set(FOREIGN_CRDS)
        missing = {g for g in foreign if not kube.api.exists(f"/apis/{g}/v1")}
        objects = [o for o in objects if o["apiVersion"].split("/")[0] not in missing]
    manifest = yaml.safe_dump_all(objects)
    try:
        applied = kube.kubectl("apply", "--validate=false", "-f", "-", input=manifest)
        assert applied.stdout.count(" created") == len(objects), applied.stdout
        fetched = json.loads(kube.kubectl("get", "-f", "-", "-o", "json", input=manifest).stdout)
        items = fetched["items"] if fetched.get("kind") == "List" else [fetched]
        assert [(i["kind"], i["metadata"]["name"]) for i in items] == [
            (o["kind"], o["metadata"]["name"]) for o in objects
        ]
        for item, obj in zip(items, objects):
            assert item["metadata"].get("uid"), f"{obj['kind']} {obj['metadata']['name']} was not stored"
            for key in ("rules", "webhooks", "data", "subjects", "roleRef"):
                if key in obj:
                    assert item[key] == obj[key], f"{obj['kind']} {obj['metadata']['name']}.{key} changed"
    finally:
        cleanup_cluster_scoped(kube, objects)


def test_an_upgrade_keeps_the_webhook_ca_of_the_first_install(kube, kube_namespace, helm):
    """The chart's ``lookup`` finds the TLS Secret an earlier install left and reuses it (helm --dry-run=server)."""
    first = helm.render(namespace=kube_namespace)
    secret = next(o for o in first if o["kind"] == "Secret")
    secret["metadata"].setdefault("annotations", {}).update(
        {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": kube_namespace}
    )
    kube.apply(secret)

    env_args = helm.template_args(namespace=kube_namespace) + [
        "--dry-run=server",
        "--disable-openapi-validation",
        "--kubeconfig",
        str(kube.kubeconfig),
    ]
    result = helm.run(*env_args)
    assert result.returncode == 0, result.stderr
    upgrade = [d for d in yaml.safe_load_all(result.stdout) if d]
    again = next(o for o in upgrade if o["kind"] == "Secret")
    webhook = next(o for o in upgrade if o["kind"] == "MutatingWebhookConfiguration")
    assert again["data"] == secret["data"]
    assert webhook["webhooks"][0]["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]

    fresh = helm.render(namespace=kube_namespace)
    assert next(o for o in fresh if o["kind"] == "Secret")["data"] != secret["data"], (
        "without a cluster to look in, every render makes a new CA"
    )
