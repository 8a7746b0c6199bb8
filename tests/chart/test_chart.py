"""The Helm chart, rendered by the real helm: lint, schema, Kubernetes validity and what each object promises."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import textwrap

import kubernetes_validate
import pytest
import yaml
from cryptography import x509

from agentcache_operator import crd, names
from agentcache_operator import kube as operator_kinds
from agentcache_operator.injector import certs
from agentcache_operator.injector.main import parse_args as parse_injector_args
from agentcache_operator.injector.webhook import render_webhook_configuration
from agentcache_operator.main import parse_args as parse_operator_args
from tests.operator.dockerfile import parse as parse_dockerfile
from tests.support.tools import ROOT

from .helm import CHART, NAMESPACE, RELEASE, VALUE_FILES, find, one

K8S_VERSIONS = ("1.29", "1.35")
VALUE_SETS = [(), *((name,) for name in VALUE_FILES)]
# Kinds of CRDs (cert-manager, Prometheus Operator) kubernetes-validate has no schema for.
CUSTOM_KINDS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
RULES_FILE = CHART / "alerts" / "agentcache.rules.yaml"


def ids(values: tuple[str, ...]) -> str:
    return values[0].removesuffix(".yaml") if values else "defaults"


def null_paths(node, path: str = "") -> list[str]:
    """Keys rendered without a value (``key:`` with nothing after it): a template slip."""
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in null_paths(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [p for index, value in enumerate(node) for p in null_paths(value, f"{path}[{index}]")]
    return [path] if node is None else []


@pytest.fixture(scope="module")
def rendered(helm) -> dict[tuple[str, ...], list[dict]]:
    return {values: helm.render(values) for values in VALUE_SETS}


# --- helm itself ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS, ids=ids)
def test_lint_strict_passes(helm, values):
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    for name in values:
        args += ["--values", str(CHART.parent.parent / "tests" / "chart" / "values" / name)]
    result = helm.run(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", VALUE_SETS, ids=ids)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_strictly(rendered, values, version):
    objects = rendered[values]
    assert objects
    for obj in objects:
        assert not null_paths(obj), f"{obj['kind']} {obj['metadata']['name']} has empty keys: {null_paths(obj)}"
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            assert obj["metadata"]["name"] and obj["metadata"]["namespace"], obj["metadata"]
            assert isinstance(obj["spec"], dict) and obj["spec"], obj["kind"]
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']} is invalid for {version}: {error.message}")


def test_custom_resources_have_the_fields_their_operators_need(rendered):
    cert_manager = rendered[("cert-manager.yaml",)]
    issuer = one(cert_manager, "Issuer")
    certificate = one(cert_manager, "Certificate")
    assert issuer["spec"] == {"selfSigned": {}}
    assert certificate["spec"]["issuerRef"] == {
        "name": issuer["metadata"]["name"],
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    assert (
        certificate["spec"]["secretName"]
        == one(cert_manager, "Deployment", "injector")["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"]
    )
    assert certificate["spec"]["dnsNames"] == certs.service_dns_names(f"{RELEASE}-injector", NAMESPACE)
    assert re.fullmatch(r"[0-9]+h", certificate["spec"]["duration"])

    external = rendered[("cert-manager-issuer.yaml",)]
    assert not find(external, "Issuer")
    assert one(external, "Certificate")["spec"]["issuerRef"] == {
        "name": "corporate-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            {"injector.failurePolicy": "Sometimes"},
            "at '/injector/failurePolicy': value must be one of 'Fail', 'Ignore'",
        ),
        ({"injector.replicas": "1"}, "at '/injector/replicas': minimum: got 1, want 2"),
        ({"image.pullPolicy": "Maybe"}, "at '/image/pullPolicy': value must be one of"),
        ({"injector.logLevel": "loud"}, "at '/injector/logLevel': value must be one of"),
        ({"operator.resyncSeconds": "0"}, "at '/operator/resyncSeconds'"),
        ({"injector.timeoutSeconds": "60"}, "at '/injector/timeoutSeconds': maximum: got 60, want 30"),
        ({"injector.tlsSource": "vault"}, "at '/injector/tlsSource': value must be one of 'chart', 'injector'"),
        ({"monitoring.interval": "soon"}, "at '/monitoring/interval': 'soon' does not match pattern"),
        ({"operator.resources.limits.memory": "lots"}, "at '/operator/resources/limits/memory'"),
        ({"nameOverride": "Bad_Name"}, "at '/nameOverride'"),
        ({"replicas": "3"}, "additional properties 'replicas' not allowed"),
    ],
)
def test_schema_refuses_a_wrong_value_and_names_it(helm, sets, message):
    error = helm.refuse(sets)
    assert "values don't meet the specifications of the schema" in error
    assert message in error


def test_every_value_is_documented_with_a_comment():
    """Each value the schema describes as a leaf has a comment line right above it in values.yaml."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    lines = (CHART / "values.yaml").read_text().splitlines()
    values = yaml.safe_load("\n".join(lines))
    undocumented = []

    def walk(node: dict, data: dict, indent: int, start: int) -> None:
        for key, sub in node.get("properties", {}).items():
            if key not in data:
                continue
            pattern = re.compile(rf"^{' ' * indent}{re.escape(key)}:")
            index = next(i for i in range(start, len(lines)) if pattern.match(lines[i]))
            if "properties" in sub:
                walk(sub, data[key], indent + 2, index)
            elif not lines[index - 1].strip().startswith("#"):
                undocumented.append(lines[index].strip())

    walk(schema, values, 0, 0)
    assert not undocumented
    assert set(values) <= set(schema["properties"])


# --- workloads ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS, ids=ids)
def test_pods_are_locked_down(rendered, values):
    for deployment in find(rendered[values], "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_pods_run_as_the_user_of_the_operator_image(rendered):
    """One image serves both Deployments; the pods' numeric user is the image's USER."""
    user = parse_dockerfile(ROOT / "operator" / "Dockerfile")[-1].last("USER")
    for objects in rendered.values():
        for deployment in find(objects, "Deployment"):
            context = deployment["spec"]["template"]["spec"]["securityContext"]
            assert f"{context['runAsUser']}:{context['runAsGroup']}" == user


def test_operator_runs_alone_and_is_recreated(rendered):
    for objects in rendered.values():
        operator = one(objects, "Deployment", "operator")
        assert operator["spec"]["replicas"] == 1
        assert operator["spec"]["strategy"] == {"type": "Recreate"}
        container = operator["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["agentcache-operator"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


@pytest.mark.parametrize("values", VALUE_SETS, ids=ids)
def test_operator_arguments_are_accepted_by_the_real_operator_cli(rendered, values):
    container = one(rendered[values], "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]
    args = parse_operator_args(container["args"])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert args.metrics_port == ports["metrics"] and args.liveness_port == ports["health"]
    if values == ("namespaced.yaml",):
        assert args.namespace == [NAMESPACE] and not args.all_namespaces
    else:
        assert args.all_namespaces and args.namespace == []
    assert args.verbose is (values == ("custom.yaml",))


def test_injector_is_redundant_and_spread(rendered):
    objects = rendered[()]
    injector = one(objects, "Deployment", "injector")
    labels = injector["spec"]["template"]["metadata"]["labels"]
    assert injector["spec"]["replicas"] >= 2
    assert injector["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    budget = one(objects, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    term = injector["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= labels.items()
    container = injector["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    service = one(objects, "Service", "injector")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"] == "https"


@pytest.mark.parametrize("values", VALUE_SETS, ids=ids)
def test_injector_arguments_are_accepted_by_the_real_injector_cli(rendered, values, monkeypatch):
    objects = rendered[values]
    container = one(objects, "Deployment", "injector")["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POD_NAMESPACE", NAMESPACE)
    args = parse_injector_args(container["args"])
    assert args.port == container["ports"][0]["containerPort"]
    assert args.service == one(objects, "Service", "injector")["metadata"]["name"]
    assert args.sidecar_image == yaml.safe_load((CHART / "values.yaml").read_text())["sidecar"]["image"] or values == (
        "custom.yaml",
    )
    if args.tls_cert_file:
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert args.tls_cert_file.startswith(mounts["tls"]) and args.tls_key_file.startswith(mounts["tls"])
    else:
        assert (
            args.tls_secret
            and args.webhook_configuration == one(objects, "MutatingWebhookConfiguration")["metadata"]["name"]
        )
    assert args.watch_namespace == (NAMESPACE if values == ("namespaced.yaml",) else None)


def test_custom_values_reach_the_pods(rendered):
    objects = rendered[("custom.yaml",)]
    for deployment in find(objects, "Deployment"):
        assert deployment["metadata"]["name"].startswith("cache-system-")
        assert deployment["metadata"]["labels"]["team"] == "platform"
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["image"] == "registry.example.com/platform/agentcache-operator:0.1.0-rc.1"
        assert container["imagePullPolicy"] == "Always"
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod["priorityClassName"] == "system-cluster-critical"
    operator = one(objects, "Deployment", "operator")["spec"]["template"]["spec"]
    assert operator["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert operator["nodeSelector"] == {"kubernetes.io/os": "linux"}
    injector = one(objects, "Deployment", "injector")
    assert injector["spec"]["replicas"] == 3
    assert (
        "requiredDuringSchedulingIgnoredDuringExecution"
        in injector["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    )
    env = {e["name"]: e.get("value") for e in injector["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AGENTCACHE_SIDECAR_IMAGE"].endswith("@sha256:" + "0123456789abcdef" * 4)
    assert one(objects, "MutatingWebhookConfiguration")["webhooks"][0]["failurePolicy"] == "Ignore"


# --- webhook and TLS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS, ids=ids)
def test_webhook_configuration_is_what_the_injector_renders(rendered, values):
    """The chart's template and the injector's pure renderer produce the same object."""
    objects = rendered[values]
    chart_webhook = one(objects, "MutatingWebhookConfiguration")
    service = one(objects, "Service", "injector")
    hook = chart_webhook["webhooks"][0]
    ca_bundle = hook["clientConfig"].get("caBundle")
    cert_manager = bool(find(objects, "Certificate"))
    expected = render_webhook_configuration(
        name=chart_webhook["metadata"]["name"],
        namespace=NAMESPACE,
        service=service["metadata"]["name"],
        ca_bundle=base64.b64decode(ca_bundle) if ca_bundle else None,
        failure_policy=hook["failurePolicy"],
        timeout_seconds=hook["timeoutSeconds"],
        cert_manager=cert_manager,
        certificate=one(objects, "Certificate")["metadata"]["name"] if cert_manager else None,
        watch_namespace=NAMESPACE if values == ("namespaced.yaml",) else None,
        labels=chart_webhook["metadata"]["labels"],
    )
    assert chart_webhook == expected


def test_webhook_defaults_fail_closed_and_skip_system_namespaces(rendered):
    hook = one(rendered[()], "MutatingWebhookConfiguration")["webhooks"][0]
    assert hook["failurePolicy"] == "Fail"
    assert hook["objectSelector"] == {"matchExpressions": [{"key": names.LABEL_CACHE, "operator": "Exists"}]}
    assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        NAMESPACE,
    ]


def test_chart_generated_ca_signs_the_serving_certificate(rendered):
    objects = rendered[()]
    secret = one(objects, "Secret", "injector-tls")
    assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}, "the CA's private key must not be stored"
    bundle = one(objects, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"]
    assert bundle == secret["data"]["ca.crt"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(bundle))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)
    dns = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert dns == certs.service_dns_names(f"{RELEASE}-injector", NAMESPACE)
    assert cert.not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3000)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    checksum = one(objects, "Deployment", "injector")["spec"]["template"]["metadata"]["annotations"]["checksum/tls"]
    assert re.fullmatch(r"[0-9a-f]{64}", checksum)


def test_self_managed_tls_renders_no_key_material(rendered):
    objects = rendered[("injector-tls.yaml",)]
    assert not find(objects, "Secret")
    assert "caBundle" not in one(objects, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]
    assert "PRIVATE KEY" not in json.dumps(objects)


# --- RBAC -----------------------------------------------------------------------------------------------------


def rules_of(objects: list[dict], component: str, kind: str) -> list[dict]:
    return [rule for role in find(objects, kind, f"{component}") for rule in role["rules"]]


def grants(rules: list[dict], group: str, resource: str, verb: str, name: str | None = None) -> bool:
    return any(
        group in r["apiGroups"]
        and resource in r["resources"]
        and verb in r["verbs"]
        and (not r.get("resourceNames") or name in r["resourceNames"])
        for r in rules
    )


@pytest.mark.parametrize("values", VALUE_SETS, ids=ids)
def test_rbac_has_no_wildcards_and_every_binding_points_at_its_role(rendered, values):
    objects = rendered[values]
    for role in find(objects, "ClusterRole") + find(objects, "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    for binding in find(objects, "ClusterRoleBinding") + find(objects, "RoleBinding"):
        kind = binding["roleRef"]["kind"]
        assert one(objects, kind, binding["roleRef"]["name"])
        account = binding["subjects"][0]["name"]
        assert account in {a["metadata"]["name"] for a in find(objects, "ServiceAccount")}


def test_operator_may_manage_its_children_and_nothing_cluster_wide_when_namespaced(rendered):
    cluster = rules_of(rendered[()], "operator", "ClusterRole")
    for kind, (prefix, plural) in operator_kinds.KINDS.items():
        group = "" if prefix == "/api/v1" else prefix.split("/")[2]
        assert grants(cluster, group, plural, "get") or kind == "Event", f"the operator cannot read {kind}"
        if kind not in ("Pod", "Event", "PersistentVolumeClaim", names.KIND):
            verbs = (
                ("create", "patch", "delete") if kind == "Secret" else ("list", "watch", "create", "patch", "delete")
            )
            for verb in verbs:
                assert grants(cluster, group, plural, verb), f"the operator cannot {verb} {kind}"
    assert not grants(cluster, "", "secrets", "list") and not grants(cluster, "", "secrets", "watch"), (
        "Secrets are read by name: the operator must not be able to read every Secret of the cluster"
    )
    election = one(rendered[()], "Role", "leader-election")
    assert election["metadata"]["namespace"] == one(rendered[()], "Deployment", "operator")["metadata"]["namespace"]
    assert election["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "delete"]}
    ]
    granted = {(group, resource) for rule in cluster for group in rule["apiGroups"] for resource in rule["resources"]}
    needed = {("" if p == "/api/v1" else p.split("/")[2], plural) for p, plural in operator_kinds.KINDS.values()}
    extra = (
        granted
        - needed
        - {
            ("events.k8s.io", "events"),
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            ("", "namespaces"),
            ("agentcache.io", "agentcaches/status"),
            ("agentcache.io", "agentcaches/finalizers"),
        }
    )
    assert not extra, f"granted but never used by the operator: {extra}"
    assert grants(cluster, "", "persistentvolumeclaims", "patch")
    assert not grants(cluster, "", "persistentvolumeclaims", "delete")
    assert not grants(cluster, "agentcache.io", "agentcaches", "create")
    assert grants(cluster, "agentcache.io", "agentcaches/status", "patch")
    assert grants(cluster, "agentcache.io", "agentcaches/finalizers", "update")
    assert grants(cluster, "", "events", "create")
    assert grants(cluster, "", "pods", "watch") and not grants(cluster, "", "pods", "patch")
    assert grants(cluster, "apiextensions.k8s.io", "customresourcedefinitions", "watch")
    assert not grants(cluster, "apiextensions.k8s.io", "customresourcedefinitions", "create")

    namespaced = rendered[("namespaced.yaml",)]
    cluster_rules = rules_of(namespaced, "operator", "ClusterRole")
    assert [r["resources"] for r in cluster_rules] == [["customresourcedefinitions"]]
    role = rules_of(namespaced, "operator", "Role")
    assert grants(role, "", "secrets", "create") and grants(role, "agentcache.io", "agentcaches", "watch")
    assert one(namespaced, "Role", "operator")["metadata"]["namespace"] == NAMESPACE


def test_injector_reads_agentcaches_and_touches_only_its_own_tls_objects(rendered):
    files_only = rules_of(rendered[()], "injector", "ClusterRole") + rules_of(rendered[()], "injector", "Role")
    assert files_only == [
        {"apiGroups": ["agentcache.io"], "resources": ["agentcaches"], "verbs": ["get", "list", "watch"]}
    ]

    objects = rendered[("injector-tls.yaml",)]
    secret_name = f"{RELEASE}-injector-tls"
    webhook_name = one(objects, "MutatingWebhookConfiguration")["metadata"]["name"]
    cluster = rules_of(objects, "injector", "ClusterRole")
    role = rules_of(objects, "injector", "Role")
    assert grants(cluster, "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "patch", webhook_name)
    assert not grants(cluster, "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "patch", "other")
    assert grants(role, "", "secrets", "update", secret_name) and not grants(role, "", "secrets", "get", "other")
    assert grants(role, "", "secrets", "create")
    assert not grants(cluster, "", "secrets", "get", secret_name), "Secrets only in the release namespace"


# --- monitoring and dashboards --------------------------------------------------------------------------------


def test_monitoring_objects_scrape_the_operator_and_the_injected_sidecars(rendered):
    objects = rendered[("monitoring.yaml",)]
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert one(objects, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service", "operator-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    operator = one(objects, "Deployment", "operator")["spec"]["template"]
    assert service["spec"]["selector"].items() <= operator["metadata"]["labels"].items()

    pod_monitor = one(objects, "PodMonitor")["spec"]
    assert pod_monitor["selector"] == {"matchLabels": {names.LABEL_INJECTED: "true"}}
    assert pod_monitor["namespaceSelector"] == {"any": True}
    endpoint = pod_monitor["podMetricsEndpoints"][0]
    assert endpoint["port"] == names.METRICS_PORT_NAME, "the port name the injector gives the sidecar"
    assert endpoint["interval"] == "15s"
    pod_label = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", names.LABEL_CACHE)
    assert {"sourceLabels": [pod_label], "targetLabel": "cache", "action": "replace"} in endpoint["relabelings"]

    rule = one(objects, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())
    assert one(rendered[("namespaced.yaml",)], "PodMonitor")["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert not find(rendered[()], "PodMonitor") and not find(rendered[()], "PrometheusRule")


def test_dashboards_are_configmaps_for_the_grafana_sidecar(rendered):
    files = sorted((CHART / "dashboards").glob("*.json"))
    assert [f.name for f in files] == ["operator.json", "overview.json", "sidecar.json"]
    for values, namespace in [((), NAMESPACE), (("monitoring.yaml",), "monitoring")]:
        maps = [m for m in find(rendered[values], "ConfigMap", "dashboard")]
        assert len(maps) == len(files)
        for config_map in maps:
            assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
            assert config_map["metadata"]["namespace"] == namespace
            ((file_name, content),) = config_map["data"].items()
            assert json.loads(content) == json.loads((CHART / "dashboards" / file_name).read_text())
    assert one(rendered[("monitoring.yaml",)], "ConfigMap", "overview")["metadata"]["annotations"] == {
        "grafana_folder": "AgentCache"
    }


def test_notes_explain_the_first_cache_and_the_pod_label(helm):
    result = helm.run("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client")
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"{names.LABEL_CACHE}: llm-cache" in notes and names.SOCKET_PATH in notes
    example = yaml.safe_load(textwrap.dedent(notes.split("<<'YAML'", 1)[1].split("  YAML", 1)[0].split("\n", 1)[1]))
    assert example["kind"] == names.KIND and example["metadata"]["name"] == "llm-cache"
    assert crd.schema_errors(example) == [], "the NOTES example must be a valid AgentCache"


def test_injector_serves_with_the_certificate_helm_generates(rendered):
    """The injector's own TLS loader accepts genSignedCert's certificate and key."""
    secret = one(rendered[()], "Secret", "injector-tls")["data"]
    context = certs.server_ssl_context(base64.b64decode(secret["tls.crt"]), base64.b64decode(secret["tls.key"]))
    assert context.get_ca_certs() is not None
