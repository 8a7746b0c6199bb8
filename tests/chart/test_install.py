"""The chart installed for real: helm and kubectl against a real API server, RBAC and the webhook included.

- ``kubectl apply --server-side`` of manifests/crds.yaml and install.yaml, and ``helm
  install --wait`` / ``upgrade --wait`` / ``uninstall``: the real Deployment controller
  makes the operator and injector pods, kwok makes them Ready (their images never run).
- RBAC: the operator and the injector run as local processes with a token of their chart
  ServiceAccount (TokenRequest), so a verb missing from the chart's roles fails here.
- The webhook: the chart's MutatingWebhookConfiguration points (``injector.webhookURL``)
  at the local injector, which keeps its caBundle. Pods made by the real ReplicaSet
  controller in a namespace enforcing PodSecurity ``restricted`` are stored with the sidecar.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agentcache_operator import names
from tests.injector.helpers import InjectorProcess
from tests.operator.test_e2e import Operator, install_crd, wait_phase
from tests.support.k8s import Kube
from tests.support.tools import ROOT

from .helm import CHART, RELEASE, Helm

pytestmark = pytest.mark.e2e

MANIFESTS = ROOT / "manifests"
RESTRICTED_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def helm_run(helm: Helm, kube: Kube, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [helm.binary, *args, "--kubeconfig", str(kube.kubeconfig)],
        capture_output=True,
        text=True,
        env=helm.env(),
        timeout=timeout,
    )
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}{result.stdout}"
    return result


def available_deployments(kube: Kube, namespace: str) -> dict[str, int]:
    items = kube.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"]
    return {d["metadata"]["name"]: d.get("status", {}).get("availableReplicas", 0) for d in items}


def service_account_kubeconfig(kube: Kube, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that acts as ``namespace/account`` with a token from the TokenRequest API."""
    token = kube.kubectl("create", "token", account, "-n", namespace, "--duration=2h").stdout.strip()
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "sa",
                "clusters": [cluster],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": account}}],
            }
        )
    )
    return path


def test_kubectl_apply_of_the_rendered_manifests_installs_and_removes_cleanly(kube):
    namespace = "agentcache-system"  # manifests/install.yaml's own
    files = ["-f", str(MANIFESTS / "crds.yaml"), "-f", str(MANIFESTS / "install.yaml")]
    kube.kubectl("apply", "--server-side", *files)
    try:
        kube.kubectl(
            "wait", "--for=condition=Available", "--timeout=120s", "deployment", "--all", "-n", namespace, timeout=150
        )
        assert available_deployments(kube, namespace) == {"agentcache-operator": 1, "agentcache-injector": 2}
        again = kube.kubectl("apply", "--server-side", *files).stdout
        assert "serverside-applied" in again and "conflict" not in again.lower()
    finally:
        kube.kubectl(
            "delete",
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
            "-f",
            str(MANIFESTS / "install.yaml"),
            timeout=150,
        )
    assert not kube.api.exists(f"/api/v1/namespaces/{namespace}") or kube.api.get(f"/api/v1/namespaces/{namespace}")[
        "metadata"
    ].get("deletionTimestamp")


@pytest.fixture(scope="module")
def release(kube: Kube, helm: Helm, tmp_path_factory) -> Iterator[tuple[str, InjectorProcess]]:
    """``helm install --wait`` into a fresh namespace, with the webhook pointed at a local injector's URL."""
    namespace = f"acs-{uuid.uuid4().hex[:6]}"
    workdir = tmp_path_factory.mktemp("release")
    injector = InjectorProcess(workdir, [], namespace=namespace)
    helm_run(
        helm,
        kube,
        "install",
        RELEASE,
        str(CHART),
        "-n",
        namespace,
        "--create-namespace",
        "--wait",
        "--timeout",
        "3m",
        "--set",
        "injector.tlsSource=injector",
        "--set",
        f"injector.webhookURL=https://127.0.0.1:{injector.port}/mutate",
    )
    install_crd(kube)
    try:
        yield namespace, injector
    finally:
        injector.stop()
        subprocess.run(
            [helm.binary, "uninstall", RELEASE, "-n", namespace, "--kubeconfig", str(kube.kubeconfig)],
            capture_output=True,
            env=helm.env(),
            timeout=120,
        )
        kube.api.request("DELETE", f"/api/v1/namespaces/{namespace}", check=False)


@contextlib.contextmanager
def operator_as_its_service_account(kube: Kube, namespace: str, workdir: Path) -> Iterator[Operator]:
    config = service_account_kubeconfig(kube, namespace, "agentcache-operator", workdir / "operator.kubeconfig")
    env = {**kube.env, "KUBECONFIG": str(config)}
    operator = Operator(
        Kube(config, kube.is_local, env, kube.api, workdir), workdir, extra=("--leader-election-namespace", namespace)
    )  # as the chart's POD_NAMESPACE
    try:
        operator.wait_live()
        yield operator
    finally:
        operator.stop()


def start_injector(kube: Kube, namespace: str, injector: InjectorProcess, workdir: Path) -> None:
    config = service_account_kubeconfig(kube, namespace, "agentcache-injector", workdir / "injector.kubeconfig")
    injector.args = [
        "--tls-secret",
        "agentcache-injector-tls",
        "--tls-san",
        "127.0.0.1",
        "--webhook-configuration",
        f"agentcache-injector-{namespace}",
        "--kubeconfig",
        str(config),
    ]
    injector.start()


def restricted_namespace(kube: Kube) -> str:
    name = f"agents-{uuid.uuid4().hex[:6]}"
    kube.api.create(
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
        },
    )
    return name


def agent_pod_template(cache: str | None) -> dict:
    labels = {"app": "agent", **({names.LABEL_CACHE: cache} if cache else {})}
    return {
        "metadata": {"labels": labels},
        "spec": {
            "containers": [
                {"name": "agent", "image": "registry.example/agent:1.0", "securityContext": RESTRICTED_SECURITY}
            ]
        },
    }


def test_installed_chart_injects_agents_in_a_restricted_namespace(kube, release, tmp_path):
    namespace, injector = release
    agents = restricted_namespace(kube)
    try:
        with operator_as_its_service_account(kube, namespace, tmp_path):
            start_injector(kube, namespace, injector, tmp_path)
            mwc = kube.api.wait_for(
                f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/agentcache-injector-{namespace}",
                lambda o: bool(o and o["webhooks"][0]["clientConfig"].get("caBundle")),
                what="the injector's caBundle",
            )
            assert mwc["webhooks"][0]["clientConfig"]["url"].endswith(f":{injector.port}/mutate")
            kube.apply(
                {
                    "apiVersion": names.API_VERSION,
                    "kind": names.KIND,
                    "metadata": {"name": "llm"},
                    "spec": {"backend": "memory"},
                },
                "-n",
                agents,
            )
            # a managed Valkey too: its Secret is read by name only, its pods pass PodSecurity restricted
            kube.apply(
                {
                    "apiVersion": names.API_VERSION,
                    "kind": names.KIND,
                    "metadata": {"name": "kv"},
                    "spec": {"backend": "valkey", "valkey": {"mode": "managed"}},
                },
                "-n",
                agents,
            )
            wait_phase(kube, agents, "llm", "Ready")
            wait_phase(kube, agents, "kv", "Ready")
            kube.apply(
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "agent"},
                    "spec": {
                        "replicas": 2,
                        "selector": {"matchLabels": {"app": "agent"}},
                        "template": agent_pod_template("llm"),
                    },
                },
                "-n",
                agents,
            )
            kube.kubectl(
                "wait", "--for=condition=Available", "--timeout=60s", "deployment/agent", "-n", agents, timeout=90
            )
            pods = kube.api.get(f"/api/v1/namespaces/{agents}/pods", labelSelector="app=agent")["items"]
            assert len(pods) == 2
            for pod in pods:
                assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
                assert pod["metadata"]["labels"][names.LABEL_INJECTED] == "true"
                sidecar = pod["spec"]["initContainers"][0]
                assert sidecar["name"] == names.SIDECAR_CONTAINER and sidecar["restartPolicy"] == "Always"
                for container in [sidecar, *pod["spec"]["containers"]]:
                    env = {e["name"]: e.get("value") for e in container.get("env", [])}
                    assert env[names.ENV_SOCKET] == names.SOCKET_PATH
                    assert {m["name"] for m in container["volumeMounts"]} >= {names.SOCKET_VOLUME}
                assert pod["status"]["phase"] == "Running"
            kube.api.wait_for(
                f"/apis/{names.API_VERSION}/namespaces/{agents}/{names.PLURAL}/llm",
                lambda o: o["status"].get("injectedPods") == 2,
                what="two injected pods counted",
            )

            injector.stop()
            late = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "late", "labels": {names.LABEL_CACHE: "llm"}},
                "spec": agent_pod_template("llm")["spec"],
            }
            refused = kube.kubectl("apply", "-n", agents, "-f", "-", input=yaml.safe_dump(late), check=False)
            assert refused.returncode != 0
            assert 'failed calling webhook "inject.agentcache.io"' in refused.stderr, refused.stderr
            kube.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "plain"},
                    "spec": agent_pod_template(None)["spec"],
                },
                "-n",
                agents,
            )
    finally:
        kube.api.request("DELETE", f"/api/v1/namespaces/{agents}", check=False)


def test_a_rule_missing_from_the_operator_role_fails_the_reconcile(kube, release, tmp_path):
    namespace, _ = release
    role_path = f"/apis/rbac.authorization.k8s.io/v1/clusterroles/agentcache-operator-{namespace}"
    original = kube.api.get(role_path)
    without = json.loads(json.dumps(original))
    without["rules"] = [r for r in without["rules"] if "configmaps" not in r.get("resources", [])]
    assert len(without["rules"]) == len(original["rules"]) - 1, "exactly one rule grants ConfigMaps"
    kube.api.replace(role_path, without)
    try:
        with operator_as_its_service_account(kube, namespace, tmp_path):
            kube.apply(
                {
                    "apiVersion": names.API_VERSION,
                    "kind": names.KIND,
                    "metadata": {"name": "norole"},
                    "spec": {"backend": "memory"},
                },
                "-n",
                namespace,
            )
            failed = wait_phase(kube, namespace, "norole", "Failed")
            message = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")["message"]
            assert "forbidden" in message and "configmaps" in message, message
    finally:
        current = kube.api.get(role_path)
        original["metadata"] = {
            "name": original["metadata"]["name"],
            "labels": original["metadata"].get("labels"),
            "annotations": original["metadata"].get("annotations"),
            "resourceVersion": current["metadata"]["resourceVersion"],
        }
        kube.api.replace(role_path, original)
        kube.kubectl("delete", "acache", "norole", "-n", namespace, "--ignore-not-found")


def test_helm_upgrade_rolls_and_uninstall_removes_the_release(kube, helm, release):
    namespace, _ = release
    helm_run(
        helm,
        kube,
        "upgrade",
        RELEASE,
        str(CHART),
        "-n",
        namespace,
        "--reuse-values",
        "--wait",
        "--timeout",
        "3m",
        "--set",
        "operator.resources.limits.memory=320Mi",
    )
    deployment = kube.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/agentcache-operator")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "320Mi"
    assert deployment["status"]["updatedReplicas"] == deployment["status"]["availableReplicas"] == 1
    helm_run(helm, kube, "uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "2m")
    assert available_deployments(kube, namespace) == {}
    for path in (
        f"/apis/rbac.authorization.k8s.io/v1/clusterroles/agentcache-operator-{namespace}",
        f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/agentcache-injector-{namespace}",
    ):
        deadline = time.monotonic() + 30
        while kube.api.exists(path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not kube.api.exists(path), f"{path} outlived helm uninstall"
    assert kube.api.exists("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/agentcaches.agentcache.io"), (
        "Helm never deletes CRDs (nor the caches in them)"
    )
