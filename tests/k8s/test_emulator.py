"""The Kubernetes API behaviour the end-to-end tests rely on, checked with real kubectl and kopf.

Against the emulator (tests/support/k8s_emulator.py) these prove it behaves like an API
server; with $KUBECONFIG set they run unchanged against that cluster.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import ssl
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.support.k8s import ApiFailure, Kube
from tests.support.k8s_emulator import ApiError, parse_label_selector, strategic_merge
from tests.support.tools import require_tool

HERE = Path(__file__).parent
GROUP = "k8stest.agentcache.io"
TOY_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"toys.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "toys", "singular": "toy", "kind": "Toy", "shortNames": ["ty"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }],
    },
}


@pytest.fixture(scope="module")
def toy_crd(kube: Kube) -> str:
    kube.apply(TOY_CRD)
    kube.kubectl("wait", "--for=condition=Established", f"crd/toys.{GROUP}", "--timeout=20s")
    return f"/apis/{GROUP}/v1"


def toy(name: str, message: str = "hello", **extra) -> dict:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Toy", "metadata": {"name": name},
            "spec": {"message": message, **extra}}


def config_map(name: str, **metadata) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **metadata}, "data": {"k": "v"}}


def test_kubectl_applies_a_crd_then_its_resource_idempotently(kube, kube_namespace, toy_crd):
    discovery = kube.api.get(toy_crd)
    assert {"toys", "toys/status"} <= {r["name"] for r in discovery["resources"]}
    assert "toys" in kube.kubectl("api-resources", f"--api-group={GROUP}", "-o", "name").stdout

    assert "created" in kube.apply(toy("one"), "-n", kube_namespace).stdout
    assert kube.kubectl("get", "toys", "-n", kube_namespace).stdout.split()[:3] == ["NAME", "AGE", "one"]
    first = yaml.safe_load(kube.kubectl("get", "toy", "one", "-n", kube_namespace, "-o", "json").stdout)
    meta = first["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1 and meta["resourceVersion"]

    assert "unchanged" in kube.apply(toy("one"), "-n", kube_namespace).stdout
    assert "serverside-applied" in kube.apply(toy("one"), "-n", kube_namespace, "--server-side").stdout
    again = kube.api.get(f"{toy_crd}/namespaces/{kube_namespace}/toys/one")
    assert again["metadata"]["resourceVersion"] == meta["resourceVersion"]  # nothing changed

    kube.apply(toy("one", "changed"), "-n", kube_namespace, "--server-side")
    changed = kube.api.get(f"{toy_crd}/namespaces/{kube_namespace}/toys/one")
    assert changed["spec"]["message"] == "changed" and changed["metadata"]["generation"] == 2
    assert int(changed["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])

    kube.kubectl("delete", "toy", "one", "-n", kube_namespace, "--timeout=20s")
    missing = kube.kubectl("get", "toy", "one", "-n", kube_namespace, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_kubectl_wait_sees_a_status_change(kube, kube_namespace, toy_crd):
    kube.apply(toy("waited"), "-n", kube_namespace)
    waiting = subprocess.Popen(
        [require_tool("kubectl"), "--kubeconfig", str(kube.kubeconfig), "wait", "-n", kube_namespace,
         "--for=jsonpath={.status.phase}=Ready", "toy/waited", "--timeout=20s"],
        env=kube.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # let it start watching, so the change arrives as an event
    kube.api.patch(f"{toy_crd}/namespaces/{kube_namespace}/toys/waited/status", {"status": {"phase": "Ready"}})
    out, err = waiting.communicate(timeout=25)
    assert waiting.returncode == 0, err
    assert "condition met" in out


def test_generation_changes_with_the_spec_only(kube, kube_namespace, toy_crd):
    path = f"{toy_crd}/namespaces/{kube_namespace}/toys"
    created = kube.api.create(path, toy("gen"))
    path += "/gen"
    assert created["metadata"]["generation"] == 1

    labelled = kube.api.patch(path, {"metadata": {"labels": {"a": "b"}}})
    status = kube.api.patch(path + "/status", {"status": {"phase": "Busy"}})
    assert labelled["metadata"]["generation"] == status["metadata"]["generation"] == 1
    versions = [int(o["metadata"]["resourceVersion"]) for o in (created, labelled, status)]
    assert versions == sorted(set(versions))  # every write is a newer version

    respec = kube.api.patch(path, {"spec": {"message": "new"}})
    assert respec["metadata"]["generation"] == 2
    unchanged = kube.api.patch(path, {"spec": {"message": "new"}})
    assert unchanged["metadata"]["resourceVersion"] == respec["metadata"]["resourceVersion"]


def test_status_subresource_separates_spec_and_status(kube, kube_namespace, toy_crd):
    path = f"{toy_crd}/namespaces/{kube_namespace}/toys"
    created = kube.api.create(path, {**toy("st"), "status": {"phase": "ignored on create"}})
    path += "/st"
    assert "status" not in created

    via_status = kube.api.patch(path + "/status", {"spec": {"message": "ignored"}, "status": {"phase": "A"}})
    assert via_status["status"] == {"phase": "A"} and via_status["spec"]["message"] == "hello"

    via_main = kube.api.patch(path, {"spec": {"message": "kept"}, "status": {"phase": "ignored"}})
    assert via_main["status"] == {"phase": "A"} and via_main["spec"]["message"] == "kept"

    replaced = kube.api.replace(path + "/status", {**via_main, "status": {"phase": "B"}})
    assert replaced["status"] == {"phase": "B"} and replaced["metadata"]["generation"] == 2


def test_replace_conflicts_on_a_stale_resource_version(kube, kube_namespace):
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    stale = kube.api.create(path, config_map("put"))
    fresh = kube.api.patch(f"{path}/put", {"data": {"k": "v2"}})
    with pytest.raises(ApiFailure) as conflict:
        kube.api.replace(f"{path}/put", {**stale, "data": {"k": "lost update"}})
    assert conflict.value.status == 409 and conflict.value.body["reason"] == "Conflict"
    replaced = kube.api.replace(f"{path}/put", {**fresh, "data": {"k": "v3"}})
    assert replaced["data"] == {"k": "v3"}


def test_failed_json_patch_test_is_422(kube, kube_namespace):
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    kube.api.create(path, config_map("jp", finalizers=["example.com/a"]))
    with pytest.raises(ApiFailure) as failed:
        kube.api.patch(f"{path}/jp", [{"op": "test", "path": "/metadata/finalizers/0", "value": "other"},
                                      {"op": "remove", "path": "/metadata/finalizers/0"}], kind="json")
    assert failed.value.status == 422
    done = kube.api.patch(f"{path}/jp", [{"op": "test", "path": "/metadata/finalizers/0", "value": "example.com/a"},
                                         {"op": "remove", "path": "/metadata/finalizers/0"}], kind="json")
    assert not done["metadata"].get("finalizers")


def test_secret_string_data_is_folded_into_data(kube, kube_namespace):
    path = f"/api/v1/namespaces/{kube_namespace}/secrets"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "folded"},
              "data": {"kept": base64.b64encode(b"old").decode(), "over": base64.b64encode(b"old").decode()},
              "stringData": {"over": "new", "plain": "text"}}
    created = kube.api.create(path, secret)
    decoded = {key: base64.b64decode(value).decode() for key, value in created["data"].items()}
    assert decoded == {"kept": "old", "over": "new", "plain": "text"} and "stringData" not in created
    assert "stringData" not in kube.api.get(f"{path}/folded")

    patched = kube.api.patch(f"{path}/folded", {"stringData": {"plain": "changed"}})
    assert base64.b64decode(patched["data"]["plain"]) == b"changed" and "stringData" not in patched
    same = kube.api.patch(f"{path}/folded", {"stringData": {"plain": "changed"}})
    assert same["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]


def test_immutable_secret_keeps_its_data_but_not_its_labels(kube, kube_namespace):
    path = f"/api/v1/namespaces/{kube_namespace}/secrets"
    kube.api.create(path, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "frozen"},
                           "immutable": True, "stringData": {"password": "one"}})
    for change in ({"stringData": {"password": "two"}}, {"data": {"other": "eA=="}}, {"immutable": False}):
        with pytest.raises(ApiFailure) as refused:
            kube.api.patch(f"{path}/frozen", change)
        assert refused.value.status == 422 and "immutable" in refused.value.body["message"]
    labelled = kube.api.patch(f"{path}/frozen", {"metadata": {"labels": {"team": "a"}}})
    assert labelled["metadata"]["labels"] == {"team": "a"} and base64.b64decode(labelled["data"]["password"]) == b"one"


def test_lists_name_their_kind_and_version(kube, kube_namespace):
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    made = kube.api.create(path, config_map("", generateName="gen-"))
    assert made["metadata"]["name"].startswith("gen-") and len(made["metadata"]["name"]) > len("gen-")
    listed = kube.api.get(path)
    assert listed["kind"] == "ConfigMapList" and listed["apiVersion"] == "v1"
    assert int(listed["metadata"]["resourceVersion"]) >= int(made["metadata"]["resourceVersion"])
    assert made["metadata"]["name"] in {item["metadata"]["name"] for item in listed["items"]}
    selected = kube.api.get(path, labelSelector="absent-label")
    assert selected["items"] == []


def test_watch_sends_only_events_after_the_given_resource_version(kube, kube_namespace):
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    kube.api.create(path, config_map("before"))
    since = kube.api.get(path)["metadata"]["resourceVersion"]
    kube.api.create(path, config_map("after"))
    kube.api.patch(f"{path}/before", {"data": {"k": "changed"}})
    kube.api.delete(f"{path}/after")

    events = [(e["type"], e["object"]["metadata"]["name"])
              for e in kube.api.watch(path, timeout=1, resourceVersion=since)]
    assert events == [("ADDED", "after"), ("MODIFIED", "before"), ("DELETED", "after")]

    fresh = [(e["type"], e["object"]["metadata"]["name"]) for e in kube.api.watch(path, timeout=1)]
    assert fresh == [("ADDED", "before")]


def test_watch_ends_the_initial_events_with_a_bookmark(kube, kube_namespace):
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    kube.api.create(path, config_map("one"))
    events = kube.api.watch(path, timeout=3, allowWatchBookmarks="true", sendInitialEvents="true",
                            resourceVersionMatch="NotOlderThan")
    first, bookmark = next(events), next(events)
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "one")
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"
    if kube.is_emulator:  # a real API server sends these about once a minute; the emulator every second
        assert next(events)["type"] == "BOOKMARK"
    events.close()


def test_finalizers_hold_a_deleted_object_until_removed(kube, kube_namespace):
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps/held"
    kube.api.create(path.rsplit("/", 1)[0], config_map("held", finalizers=["example.com/hold"]))
    kube.api.delete(path)
    held = kube.api.get(path)
    assert held["metadata"]["deletionTimestamp"] and held["metadata"]["finalizers"] == ["example.com/hold"]
    kube.api.patch(path, {"metadata": {"finalizers": None}})
    kube.api.wait_for(path, lambda obj: obj is None, what="removal after the last finalizer")


def test_deleting_an_owner_deletes_its_dependents_in_cascade(kube, kube_namespace):
    base = f"/api/v1/namespaces/{kube_namespace}"
    owner = kube.api.create(f"{base}/configmaps", config_map("owner"))

    def owned_by(obj: dict) -> list[dict]:
        return [{"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
                 "uid": obj["metadata"]["uid"]}]

    child = kube.api.create(f"{base}/secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "child", "ownerReferences": owned_by(owner)}})
    kube.api.create(f"{base}/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
        "name": "grandchild", "ownerReferences": owned_by(child)}})
    unrelated = kube.api.create(f"{base}/configmaps", config_map("unrelated"))

    orphaned = kube.api.create(f"{base}/configmaps", config_map("orphaned", ownerReferences=owned_by(unrelated)))

    kube.api.delete(f"{base}/configmaps/owner", propagationPolicy="Background")
    for path in (f"{base}/secrets/child", f"{base}/serviceaccounts/grandchild"):
        kube.api.wait_for(path, lambda obj: obj is None, what="garbage collection")
    kube.api.delete(f"{base}/configmaps/unrelated", propagationPolicy="Orphan")
    kube.api.wait_for(f"{base}/configmaps/orphaned", lambda obj: not obj["metadata"].get("ownerReferences"),
                      what="orphaning")
    assert kube.api.get(f"{base}/configmaps/orphaned")["metadata"]["uid"] == orphaned["metadata"]["uid"]


def test_strategic_merge_merges_containers_by_name(kube, kube_namespace):
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}, {"name": "side", "image": "side:1"}]}}},
    }
    kube.apply(deployment, "-n", kube_namespace)
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "app:2"
    assert "configured" in kube.apply(deployment, "-n", kube_namespace).stdout
    kube.kubectl("patch", "deployment", "web", "-n", kube_namespace, "--type=strategic", "-p",
                 '{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"side:2"}]}}}}')
    live = kube.api.get(f"/apis/apps/v1/namespaces/{kube_namespace}/deployments/web")
    images = {c["name"]: c["image"] for c in live["spec"]["template"]["spec"]["containers"]}
    assert images == {"app": "app:2", "side": "side:2"}
    assert live["metadata"]["generation"] == 3

    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "app:3"
    diff = kube.kubectl("diff", "-n", kube_namespace, "-f", "-", input=yaml.safe_dump(deployment), check=False)
    assert diff.returncode == 1 and "+      - image: app:3" in diff.stdout, diff.stderr  # a server-side dry run
    after = kube.api.get(f"/apis/apps/v1/namespaces/{kube_namespace}/deployments/web")
    assert after["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]


CHART_FILES = {
    "Chart.yaml": "apiVersion: v2\nname: kinds\nversion: 0.1.0\n",
    "templates/all.yaml": textwrap.dedent("""\
        apiVersion: v1
        kind: ServiceAccount
        metadata: {name: {{ .Release.Name }}}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: {{ .Release.Name }}-config}
        data: {greeting: {{ .Values.greeting | quote }}}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {name: {{ .Release.Name }}-secret}
        stringData: {password: not-a-secret}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: {{ .Release.Name }}}
        spec:
          selector: {app: {{ .Release.Name }}}
          ports: [{name: valkey, port: 6379, targetPort: 6379}]
        ---
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: {{ .Release.Name }}}
        spec:
          serviceName: {{ .Release.Name }}
          selector: {matchLabels: {app: {{ .Release.Name }}}}
          template:
            metadata: {labels: {app: {{ .Release.Name }}}}
            spec:
              serviceAccountName: {{ .Release.Name }}
              containers:
              - name: valkey
                image: valkey/valkey:8
                ports: [{containerPort: 6379}]
        ---
        apiVersion: policy/v1
        kind: PodDisruptionBudget
        metadata: {name: {{ .Release.Name }}}
        spec: {maxUnavailable: 1, selector: {matchLabels: {app: {{ .Release.Name }}}}}
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: {{ .Release.Name }}}
        spec:
          podSelector: {matchLabels: {app: {{ .Release.Name }}}}
          ingress: [{from: [{podSelector: {matchLabels: {client: "true"}}}]}]
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: Role
        metadata: {name: {{ .Release.Name }}}
        rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: RoleBinding
        metadata: {name: {{ .Release.Name }}}
        roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: {{ .Release.Name }}}
        subjects: [{kind: ServiceAccount, name: {{ .Release.Name }}}]
        ---
        apiVersion: coordination.k8s.io/v1
        kind: Lease
        metadata: {name: {{ .Release.Name }}}
        spec: {holderIdentity: nobody}
        ---
        apiVersion: batch/v1
        kind: Job
        metadata: {name: {{ .Release.Name }}-once}
        spec:
          template:
            spec:
              restartPolicy: Never
              containers: [{name: once, image: busybox, command: ["true"]}]
        """),
}


def test_helm_template_output_applies_idempotently(kube, kube_namespace, tmp_path):
    helm = require_tool("helm")
    for name, text in CHART_FILES.items():
        (tmp_path / "chart" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "chart" / name).write_text(text)
    env = {**kube.env, "HELM_CACHE_HOME": str(tmp_path / "h"), "HELM_CONFIG_HOME": str(tmp_path / "h"),
           "HELM_DATA_HOME": str(tmp_path / "h")}
    rendered = subprocess.run([helm, "template", "rel", str(tmp_path / "chart"), "--namespace", kube_namespace,
                               "--set", "greeting=hi"], capture_output=True, text=True, env=env, check=True).stdout
    kinds = [doc["kind"] for doc in yaml.safe_load_all(rendered) if doc]
    assert len(kinds) == 11

    first = kube.apply(rendered, "-n", kube_namespace).stdout.splitlines()
    assert len(first) == len(kinds) and all(line.endswith(" created") for line in first)

    def versions() -> dict[str, str]:
        listed = kube.kubectl("get", "-n", kube_namespace, "-f", "-", "-o", "json", input=rendered).stdout
        return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
                for o in yaml.safe_load(listed)["items"]}

    before = versions()
    assert sorted(name.split("/")[0] for name in before) == sorted(kinds)
    kube.apply(rendered, "-n", kube_namespace)  # kubectl always re-sends a PDB's selector: no change
    assert versions() == before
    assert kube.api.get(f"/api/v1/namespaces/{kube_namespace}/configmaps/rel-config")["data"] == {"greeting": "hi"}
    kube.kubectl("delete", "-n", kube_namespace, "-f", "-", "--timeout=20s", input=rendered)
    assert kube.api.get(f"/apis/apps/v1/namespaces/{kube_namespace}/statefulsets")["items"] == []


def test_deleting_a_namespace_deletes_its_contents(kube):
    namespace = f"gone-{time.monotonic_ns()}"
    kube.kubectl("create", "namespace", namespace)
    kube.kubectl("create", "configmap", "inside", "-n", namespace, "--from-literal=k=v")
    kube.kubectl("delete", "namespace", namespace, "--timeout=60s")
    assert not kube.api.exists(f"/api/v1/namespaces/{namespace}/configmaps/inside")
    assert not kube.api.exists(f"/api/v1/namespaces/{namespace}")


def test_a_real_kopf_operator_reconciles_toys(kube, kube_namespace, toy_crd):
    toys = f"{toy_crd}/namespaces/{kube_namespace}/toys"
    config_maps = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    with kube.run_operator(HERE / "toy_operator.py") as operator:
        kube.apply(toy("rex", "hello"), "-n", kube_namespace)
        try:
            config_map = kube.api.wait_for(f"{config_maps}/rex-toy", lambda o: o is not None, what="the ConfigMap")
            owner = kube.api.get(f"{toys}/rex")
            assert config_map["data"] == {"message": "hello"}
            assert [(r["kind"], r["name"], r["uid"], r.get("controller")) for r in
                    config_map["metadata"]["ownerReferences"]] == [("Toy", "rex", owner["metadata"]["uid"], True)]
            kube.api.wait_for(f"{toys}/rex", lambda o: o["status"].get("message") == "hello" if "status" in o
                              else False, what="the status patch")

            kube.kubectl("patch", "toy", "rex", "-n", kube_namespace, "--type=merge", "-p",
                         '{"spec":{"message":"bye"}}')
            kube.api.wait_for(f"{config_maps}/rex-toy", lambda o: o["data"]["message"] == "bye",
                              what="the update handler")
            kube.api.wait_for(f"{toys}/rex", lambda o: o["status"].get("message") == "bye", what="the new status")
            assert kube.api.get(f"{toys}/rex")["metadata"]["finalizers"]

            kube.kubectl("delete", "toy", "rex", "-n", kube_namespace, "--timeout=20s")
            assert kube.api.get(f"{config_maps}/rex-farewell")["data"] == {"toy": "rex"}
            kube.api.wait_for(f"{config_maps}/rex-toy", lambda o: o is None, what="garbage collection")
            kube.api.wait_for(f"/api/v1/namespaces/{kube_namespace}/events?fieldSelector=involvedObject.name=rex",
                              lambda events: any(e["reason"] == "Reconciled" for e in events["items"]),
                              what="kopf's Event")
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n--- kopf log ---\n{operator.logs()[-6000:]}") from None


def test_strategic_merge_obeys_patch_directives():
    live = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}],
                     "finalizers": ["x"], "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    patch = {"spec": {"$setElementOrder/containers": [{"name": "a"}],
                      "containers": [{"name": "b", "$patch": "delete"}, {"name": "c", "image": "2"}],
                      "$deleteFromPrimitiveList/finalizers": ["x"],
                      "strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert strategic_merge(live, patch) == {"spec": {
        "containers": [{"name": "a", "image": "1"}, {"name": "c", "image": "2"}],
        "finalizers": [], "strategy": {"type": "Recreate"}}}
    assert strategic_merge(live, {"spec": {"$patch": "replace", "replicas": 1}}) == {"spec": {"replicas": 1}}


@pytest.mark.parametrize(("selector", "labels", "matches"), [
    ("app=web,tier!=db", {"app": "web", "tier": "front"}, True),
    ("app=web,tier!=db", {"app": "web", "tier": "db"}, False),
    ("env in (dev, test),!legacy", {"env": "test"}, True),
    ("env notin (prod),owner", {"env": "prod", "owner": "me"}, False),
    ("", {}, True),
])
def test_label_selectors(selector, labels, matches):
    assert parse_label_selector(selector)(labels) is matches


def test_a_malformed_selector_is_a_bad_request():
    with pytest.raises(ApiError) as error:
        parse_label_selector("app in in (")
    assert error.value.status == 400


def _webhook_tls(tmp_path: Path) -> tuple[bytes, ssl.SSLContext]:
    """A CA (its PEM for caBundle) and a server context for 127.0.0.1 signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=1))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_pem = certificate("test-ca", ca_key, "test-ca", ca_key, ca=True).public_bytes(serialization.Encoding.PEM)
    server = certificate("127.0.0.1", server_key, "test-ca", ca_key, ca=False)
    (tmp_path / "tls.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    return ca_pem, context


class _Injector(http.server.BaseHTTPRequestHandler):
    """Adds a label to every pod it is asked about; refuses pods named 'refused'."""

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["request"]
        answer = {"uid": request["uid"], "allowed": request["object"]["metadata"].get("name") != "refused"}
        if answer["allowed"]:
            patch = [{"op": "add", "path": "/metadata/labels/injected", "value": "true"}]
            answer.update(patchType="JSONPatch", patch=base64.b64encode(json.dumps(patch).encode()).decode())
        else:
            answer["status"] = {"code": 403, "message": "no refused pods here"}
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": answer}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.emulator_only("a real API server cannot reach a webhook on the test host's loopback")
def test_admission_webhooks_mutate_and_refuse_on_create(kube, kube_namespace, tmp_path):
    ca_pem, context = _webhook_tls(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Injector)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    label = f"webhook-test-{kube_namespace}"
    rules = [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]
    reachable = {"name": "inject.k8stest.agentcache.io", "rules": rules, "sideEffects": "None",
                 "admissionReviewVersions": ["v1"], "failurePolicy": "Fail",
                 "objectSelector": {"matchLabels": {label: "reachable"}},
                 "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": kube_namespace}},
                 "clientConfig": {"url": f"https://127.0.0.1:{server.server_port}/mutate",
                                  "caBundle": base64.b64encode(ca_pem).decode()}}
    unreachable = {**reachable, "name": "absent.k8stest.agentcache.io",
                   "objectSelector": {"matchLabels": {label: "unreachable"}},
                   "clientConfig": {"service": {"namespace": kube_namespace, "name": "absent"}}}
    config = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
              "metadata": {"name": label}, "webhooks": [reachable, unreachable]}

    def pod(name: str, selected: str) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {label: selected}},
                "spec": {"containers": [{"name": "app", "image": "busybox"}]}}

    pods = f"/api/v1/namespaces/{kube_namespace}/pods"
    kube.api.create("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", config)
    try:
        assert kube.api.create(pods, pod("mutated", "reachable"))["metadata"]["labels"]["injected"] == "true"
        assert "injected" not in kube.api.create(pods, pod("untouched", "other"))["metadata"]["labels"]
        with pytest.raises(ApiFailure) as refused:
            kube.api.create(pods, pod("refused", "reachable"))
        assert refused.value.status == 403 and "no refused pods here" in refused.value.body["message"]
        with pytest.raises(ApiFailure) as failed:
            kube.api.create(pods, pod("unserved", "unreachable"))
        assert failed.value.status == 500 and "failed calling webhook" in failed.value.body["message"]
    finally:
        kube.api.delete(f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{label}")
        server.shutdown()
