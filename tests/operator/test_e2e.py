"""End to end: the real ``agentcache-operator`` process against a Kubernetes API, driven by real kubectl.

The API is the real control plane of tests/support/k8s.py (or the cluster $KUBECONFIG
names; the same tests run unchanged there): the real StatefulSet, Job and garbage
collector controllers act on what the operator creates, the scheduler places the pods
and kwok's nodes make them Ready (their containers never run: no container runtime here).
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentcache_operator import names
from tests.support.k8s import Kube
from tests.support.tools import ROOT

from .examples import EXAMPLE_FILES, MANIFEST_CRDS, documents

pytestmark = pytest.mark.e2e

RESYNC_SECONDS = 2
EXAMPLES = {path.stem: path for path in EXAMPLE_FILES}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


class Operator:
    """``agentcache-operator`` as a process; ``scope`` is its namespace arguments (default: all)."""

    def __init__(
        self, kube: Kube, workdir: Path, scope: tuple[str, ...] = ("--all-namespaces",), extra: tuple[str, ...] = ()
    ):
        self.metrics_port, self.liveness_port = _free_port(), _free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "agentcache-operator.log"
        command = [
            sys.executable,
            "-m",
            "agentcache_operator.main",
            *scope,
            "--bind",
            "127.0.0.1",
            "--metrics-port",
            str(self.metrics_port),
            "--liveness-port",
            str(self.liveness_port),
            "--resync-seconds",
            str(RESYNC_SECONDS),
            *extra,
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=kube.env, stdout=log, stderr=subprocess.STDOUT)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def live(self) -> bool:
        return _get(f"http://127.0.0.1:{self.liveness_port}/healthz")[0] == 200

    def metrics(self) -> str:
        return _get(f"http://127.0.0.1:{self.metrics_port}/metrics")[1]

    def sample(self, name: str) -> float:
        """One sample of its /metrics (0 when absent)."""
        for line in self.metrics().splitlines():
            if line.startswith(name + " "):
                return float(line.split(" ")[1])
        return 0.0

    def wait_live(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if self.live():
                return
            time.sleep(0.1)
        raise AssertionError(f"agentcache-operator did not become live:\n{self.logs()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def install_crd(kube: Kube) -> None:
    kube.kubectl("apply", "--validate=false", "-f", str(MANIFEST_CRDS))  # what a user applies
    kube.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/agentcaches.agentcache.io")
    # Established is not served yet: the API server's watch cache answers 429 until it has initialized
    kube.api.wait_for(
        f"/apis/{names.API_VERSION}/{names.PLURAL}?limit=1",
        lambda o: o is not None,
        what="the AgentCache list to be served",
    )


@contextlib.contextmanager
def running_operator(kube: Kube, workdir: Path, *scope: str) -> Iterator[Operator]:
    """The operator, live; on exit it is stopped and must not have logged an error."""
    process = Operator(kube, workdir, *((scope,) if scope else ()))
    try:
        process.wait_live()
        yield process
    finally:
        process.stop()
        logs = process.logs()
        assert " ERROR " not in logs and "Traceback" not in logs, f"the operator logged errors:\n{logs[-6000:]}"


@pytest.fixture(scope="module")
def operator(kube: Kube):
    """manifests/crds.yaml applied with kubectl, then the operator as its own process."""
    install_crd(kube)
    with running_operator(kube, kube.workdir) as process:
        yield process


def cache_path(namespace: str, name: str = "") -> str:
    return f"/apis/{names.API_VERSION}/namespaces/{namespace}/{names.PLURAL}" + (f"/{name}" if name else "")


def child_path(kind: str, namespace: str, name: str) -> str:
    from agentcache_operator.kube import path

    return path(kind, namespace, name)


def example_cache_name(stem: str) -> str:
    (body,) = [d for d in documents(EXAMPLES[stem]) if d["kind"] == names.KIND]
    return body["metadata"]["name"]


def expected_children(stem: str, name: str) -> list[tuple[str, str]]:
    children = [("ConfigMap", names.config_map_name(name))]
    if stem in ("managed-standalone", "replicated", "cluster"):
        base = names.valkey_name(name)
        children += [
            ("Secret", names.valkey_password_secret(name)),
            ("ConfigMap", f"{base}-config"),
            ("Service", base),
            ("Service", f"{base}-headless"),
            ("StatefulSet", base),
            ("PodDisruptionBudget", base),
            ("NetworkPolicy", base),
        ]
    if stem == "replicated":
        children += [
            ("StatefulSet", f"{name}-valkey-replica"),
            ("Service", f"{name}-valkey-replicas"),
            ("StatefulSet", f"{name}-sentinel"),
            ("Service", f"{name}-sentinel"),
        ]
    if stem == "cluster":
        children.append(("Job", f"{name}-valkey-bootstrap"))
    return children


def wait_phase(
    kube: Kube,
    namespace: str,
    name: str,
    phase: str,
    timeout: float = 60,
    accept: Callable[[dict], bool] = lambda o: True,
) -> dict:
    """The cache once its status for the current generation has ``phase`` (and satisfies ``accept``)."""
    return kube.api.wait_for(
        cache_path(namespace, name),
        lambda o: (
            o is not None
            and (o.get("status") or {}).get("phase") == phase
            and o["status"].get("observedGeneration") == o["metadata"]["generation"]
            and accept(o)
        ),
        timeout=timeout,
        what=f"phase {phase}",
    )


def condition(cache: dict, kind: str) -> dict:
    return next(c for c in cache["status"]["conditions"] if c["type"] == kind)


@pytest.mark.parametrize("stem", sorted(EXAMPLES))
def test_example_gets_owned_children_and_reaches_ready(kube, kube_namespace, operator, stem):
    kube.kubectl("apply", "--validate=false", "-n", kube_namespace, "-f", str(EXAMPLES[stem]))
    name = example_cache_name(stem)
    uid = kube.api.get(cache_path(kube_namespace, name))["metadata"]["uid"]
    for kind, child in expected_children(stem, name):
        obj = kube.api.wait_for(
            child_path(kind, kube_namespace, child), lambda o: o is not None, what=f"{kind} {child}"
        )
        owners = obj["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"], o["uid"], o["controller"]) for o in owners] == [(names.KIND, name, uid, True)]
    ready = wait_phase(kube, kube_namespace, name, "Ready")
    if stem in ("managed-standalone", "replicated", "cluster"):  # Ready because real pods became Ready
        pods = kube.api.get(f"/api/v1/namespaces/{kube_namespace}/pods", labelSelector=f"{names.LABEL_INSTANCE}={name}")
        valkey = [p for p in pods["items"] if p["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"]
        assert valkey and all(p["spec"].get("nodeName") and p["status"]["phase"] == "Running" for p in valkey)
    assert not ready["metadata"].get("finalizers"), "nothing outside Kubernetes to clean: no finalizer"
    assert condition(ready, "Ready")["status"] == "True"
    assert condition(ready, "Degraded")["status"] == "False"
    assert ready["status"]["endpoint"]
    printed = kube.kubectl("get", "acache", name, "-n", kube_namespace, "-o", "jsonpath={.status.phase}").stdout
    assert printed == "Ready"
    events = kube.api.get(f"/api/v1/namespaces/{kube_namespace}/events")["items"]
    assert any(e["involvedObject"]["name"] == name and e["reason"] == "Ready" for e in events)


def _apply_ready_standalone(kube, namespace):
    kube.kubectl("apply", "--validate=false", "-n", namespace, "-f", str(EXAMPLES["managed-standalone"]))
    return wait_phase(kube, namespace, "llm-cache", "Ready")


def test_spec_change_updates_children_and_observed_generation(kube, kube_namespace, operator):
    before = _apply_ready_standalone(kube, kube_namespace)
    sts_path = child_path("StatefulSet", kube_namespace, "llm-cache-valkey")
    old_hash = kube.api.get(sts_path)["spec"]["template"]["metadata"]["annotations"][names.ANNOTATION_CONFIG_HASH]
    patch = {"spec": {"defaultTTL": 42, "valkey": {"maxMemory": "512Mi"}}}
    kube.kubectl("patch", "acache", "llm-cache", "-n", kube_namespace, "--type=merge", "-p", json.dumps(patch))
    conf_path = child_path("ConfigMap", kube_namespace, "llm-cache-valkey-config")
    kube.api.wait_for(conf_path, lambda o: "maxmemory 536870912\n" in o["data"]["valkey.conf"], what="new maxmemory")
    kube.api.wait_for(
        child_path("ConfigMap", kube_namespace, names.config_map_name("llm-cache")),
        lambda o: "default_ttl: 42" in o["data"][names.CONFIG_FILE_KEY],
        what="the new sidecar config",
    )
    # the StatefulSet is applied after the ConfigMaps it mounts: wait for it, do not read it at once
    kube.api.wait_for(
        sts_path,
        lambda o: o["spec"]["template"]["metadata"]["annotations"][names.ANNOTATION_CONFIG_HASH] != old_hash,
        what="the pod template's config hash to change",
    )
    after = wait_phase(kube, kube_namespace, "llm-cache", "Ready")
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    assert after["status"]["observedGeneration"] == after["metadata"]["generation"]


def test_reconciling_again_changes_nothing(kube, kube_namespace, operator):
    _apply_ready_standalone(kube, kube_namespace)
    versions = {
        (kind, child): kube.api.get(child_path(kind, kube_namespace, child))["metadata"]["resourceVersion"]
        for kind, child in expected_children("managed-standalone", "llm-cache")
    }
    time.sleep(RESYNC_SECONDS * 2.5)  # at least two timer-driven reconciles
    for kind, child in expected_children("managed-standalone", "llm-cache"):
        now = kube.api.get(child_path(kind, kube_namespace, child))
        assert now["metadata"]["resourceVersion"] == versions[kind, child], f"{kind} {child} was written"


OWN_RESOURCES = {
    "agentcaches",
    "configmaps",
    "secrets",
    "services",
    "statefulsets",
    "poddisruptionbudgets",
    "networkpolicies",
    "jobs",
    "pods",
}
WRITE_VERBS = {"APPLY", "PATCH", "POST", "PUT"}


def test_steady_state_sends_the_api_server_no_writes_and_few_reads(kube, kube_namespace, operator):
    """Counted by the API server itself: nothing changes, so the resyncs write nothing."""
    for stem in ("memory", "managed-standalone", "cluster"):
        kube.kubectl("apply", "--validate=false", "-n", kube_namespace, "-f", str(EXAMPLES[stem]))
    for stem in ("memory", "managed-standalone", "cluster"):
        wait_phase(kube, kube_namespace, example_cache_name(stem), "Ready")
    kube.api.wait_for(
        "/api/v1/namespaces",
        lambda o: (
            not any(  # earlier tests' namespaces are being emptied
                n["status"]["phase"] == "Terminating" for n in o["items"]
            )
        ),
        timeout=120,
        what="no terminating namespace",
    )
    time.sleep(RESYNC_SECONDS * 1.5)
    before = kube.api.request_counts(OWN_RESOURCES)
    time.sleep(RESYNC_SECONDS * 3)  # three resync periods
    after = kube.api.request_counts(OWN_RESOURCES)
    delta = {verb: after.get(verb, 0) - before.get(verb, 0) for verb in after}
    writes = {verb: n for verb, n in delta.items() if verb in WRITE_VERBS and n}
    assert not writes, f"writes at rest: {writes}"
    reads = sum(n for verb, n in delta.items() if verb not in WRITE_VERBS)
    # about one read (a managed cache's password Secret, not watched) per cache and resync, which
    # the jittered resync may visit twice in a period; before, each visit read the cache, its pods and children
    assert reads <= 2 * 3 * 3, f"{reads} reads in three resyncs of three caches: {delta}"


def test_deleted_or_edited_child_is_restored(kube, kube_namespace, operator):
    kube.kubectl("apply", "--validate=false", "-n", kube_namespace, "-f", str(EXAMPLES["memory"]))
    wait_phase(kube, kube_namespace, "memory-cache", "Ready")
    config_path = child_path("ConfigMap", kube_namespace, names.config_map_name("memory-cache"))
    original = kube.api.get(config_path)
    kube.kubectl("delete", "configmap", names.config_map_name("memory-cache"), "-n", kube_namespace)
    restored = kube.api.wait_for(
        config_path,
        lambda o: o is not None and o["metadata"]["uid"] != original["metadata"]["uid"],
        what="the ConfigMap to come back",
    )
    assert restored["data"] == original["data"]
    edit = {"data": {names.CONFIG_FILE_KEY: "cache: {backend: memory}\n"}}
    kube.kubectl(
        "patch",
        "configmap",
        names.config_map_name("memory-cache"),
        "-n",
        kube_namespace,
        "--type=merge",
        "-p",
        json.dumps(edit),
    )
    kube.api.wait_for(config_path, lambda o: o["data"] == original["data"], what="the hand edit to be undone")


def test_missing_external_secret_fails_with_a_fix_and_recovers(kube, kube_namespace, operator):
    (secret, cache) = documents(EXAMPLES["external"])
    kube.apply(cache, "-n", kube_namespace)
    failed = wait_phase(kube, kube_namespace, "external-cache", "Failed")
    message = condition(failed, "Ready")["message"]
    assert "external-valkey-auth" in message and "does not exist" in message and "kubectl create secret" in message
    assert condition(failed, "Ready")["reason"] == names.REASON_SECRET_NOT_USABLE
    assert operator.live()
    events = kube.api.get(f"/api/v1/namespaces/{kube_namespace}/events")["items"]
    assert any(
        e["involvedObject"]["name"] == "external-cache"
        and e["reason"] == "Failed"
        and e["type"] == "Warning"
        and "kubectl create secret" in e["message"]
        for e in events
    )
    kube.kubectl("create", "secret", "generic", "external-valkey-auth", "-n", kube_namespace, "--from-literal=other=pw")
    wrong_key = wait_phase(
        kube,
        kube_namespace,
        "external-cache",
        "Failed",
        timeout=RESYNC_SECONDS * 5,
        accept=lambda o: "has no key 'password'" in condition(o, "Ready")["message"],
    )
    assert "spec.valkey.passwordSecretRef.key" in condition(wrong_key, "Ready")["message"]
    kube.apply(secret, "-n", kube_namespace)  # the example's stringData: the API server folds it into data
    ready = wait_phase(kube, kube_namespace, "external-cache", "Ready", timeout=RESYNC_SECONDS * 5)
    assert ready["status"]["endpoint"] == "valkey://valkey.shared-services.svc:6379/1"


def test_managed_password_is_generated_once(kube, kube_namespace, operator):
    _apply_ready_standalone(kube, kube_namespace)
    secret_path = child_path("Secret", kube_namespace, names.valkey_password_secret("llm-cache"))
    password = base64.b64decode(kube.api.get(secret_path)["data"]["password"])
    assert len(password) >= 32
    kube.kubectl(
        "patch", "acache", "llm-cache", "-n", kube_namespace, "--type=merge", "-p", '{"spec":{"defaultTTL":7}}'
    )
    wait_phase(kube, kube_namespace, "llm-cache", "Ready")
    assert base64.b64decode(kube.api.get(secret_path)["data"]["password"]) == password


def test_labelled_pods_are_counted(kube, kube_namespace, operator):
    kube.kubectl("apply", "--validate=false", "-n", kube_namespace, "-f", str(EXAMPLES["memory"]))
    for pod, injected in [("with-sidecar", "true"), ("without-sidecar", None)]:
        labels = {names.LABEL_CACHE: "memory-cache", **({names.LABEL_INJECTED: injected} if injected else {})}
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod, "labels": labels},
                "spec": {"containers": [{"name": "agent", "image": "busybox"}]},
            },
            "-n",
            kube_namespace,
        )
    kube.api.wait_for(
        cache_path(kube_namespace, "memory-cache"),
        lambda o: (o.get("status") or {}).get("injectedPods") == 1 and o["status"].get("uninjectedPods") == 1,
        what="pod counts",
    )


def test_pods_started_with_an_older_sidecar_config_are_counted_outdated(kube, kube_namespace, operator):
    kube.kubectl("apply", "--validate=false", "-n", kube_namespace, "-f", str(EXAMPLES["memory"]))
    ready = wait_phase(kube, kube_namespace, "memory-cache", "Ready", accept=lambda o: "configHash" in o["status"])
    old_hash = ready["status"]["configHash"]
    config_map = kube.api.get(child_path("ConfigMap", kube_namespace, names.config_map_name("memory-cache")))
    assert config_map["metadata"]["annotations"][names.ANNOTATION_CONFIG_HASH] == old_hash
    labels = {names.LABEL_CACHE: "memory-cache", names.LABEL_INJECTED: "true"}
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "started-earlier",
                "labels": labels,
                "annotations": {names.ANNOTATION_CONFIG_HASH: old_hash},
            },
            "spec": {"containers": [{"name": "agent", "image": "busybox"}]},
        },
        "-n",
        kube_namespace,
    )
    kube.api.wait_for(
        cache_path(kube_namespace, "memory-cache"),
        lambda o: o["status"].get("injectedPods") == 1 and o["status"].get("outdatedPods") == 0,
        what="the pod counted as current",
    )
    kube.kubectl(
        "patch", "acache", "memory-cache", "-n", kube_namespace, "--type=merge", "-p", '{"spec":{"defaultTTL":42}}'
    )
    changed = kube.api.wait_for(
        cache_path(kube_namespace, "memory-cache"),
        lambda o: o["status"].get("configHash") not in (None, old_hash) and o["status"].get("outdatedPods") == 1,
        what="the pod counted as outdated",
    )
    config_map = kube.api.get(child_path("ConfigMap", kube_namespace, names.config_map_name("memory-cache")))
    assert config_map["metadata"]["annotations"][names.ANNOTATION_CONFIG_HASH] == changed["status"]["configHash"]


def test_deleting_the_cache_removes_everything(kube, kube_namespace, operator):
    kube.kubectl("apply", "--validate=false", "-n", kube_namespace, "-f", str(EXAMPLES["cluster"]))
    children = expected_children("cluster", "cluster-cache")
    for kind, child in children:
        kube.api.wait_for(child_path(kind, kube_namespace, child), lambda o: o is not None)
    kube.kubectl("delete", "acache", "cluster-cache", "-n", kube_namespace)
    for kind, child in children:
        kube.api.wait_for(
            child_path(kind, kube_namespace, child),
            lambda o: o is None,
            timeout=30,
            what=f"{kind} {child} to be garbage-collected",
        )


def test_operator_exports_its_metrics(kube, kube_namespace, operator):
    kube.kubectl("apply", "--validate=false", "-n", kube_namespace, "-f", str(EXAMPLES["file"]))
    wait_phase(kube, kube_namespace, "file-cache", "Ready")
    text = operator.metrics()
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and line[0] != "#"}
    assert samples['agentcache_operator_reconciles_total{result="ok"}'] >= 1
    assert samples["agentcache_operator_reconcile_duration_seconds_count"] >= 1
    assert samples['agentcache_operator_caches{phase="Ready"}'] >= 1


def test_a_larger_volume_size_expands_the_claims(kube, kube_namespace, operator):
    """The StatefulSet controller made the claim; the default StorageClass allows expansion (scripts/cluster.sh)."""
    kube.kubectl("apply", "--validate=false", "-n", kube_namespace, "-f", str(EXAMPLES["replicated"]))
    kube.api.wait_for(
        child_path("PersistentVolumeClaim", kube_namespace, "data-replicated-cache-valkey-0"),
        lambda o: o is not None and o["status"].get("phase") == "Bound",
        what="a bound claim",
    )
    patch = {"spec": {"valkey": {"persistence": {"size": "3Gi"}}}}
    kube.kubectl("patch", "acache", "replicated-cache", "-n", kube_namespace, "--type=merge", "-p", json.dumps(patch))
    kube.api.wait_for(
        child_path("PersistentVolumeClaim", kube_namespace, "data-replicated-cache-valkey-0"),
        lambda o: o["spec"]["resources"]["requests"]["storage"] == "3Gi",
        what="the claim to grow",
    )
    sts = kube.api.get(child_path("StatefulSet", kube_namespace, "replicated-cache-valkey"))
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "2Gi", (
        "the template is immutable in Kubernetes and must be left alone"
    )
