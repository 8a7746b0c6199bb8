"""Pure renderers: every example's children, checked against the real Kubernetes schemas (no server)."""

from __future__ import annotations

import base64

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from agentcache_operator import names
from agentcache_operator.injector.patch import SidecarDefaults, build_patch
from agentcache_operator.render import Cache, SpecError, endpoint, render_children
from agentcache_operator.render.common import quantity_bytes
from agentcache_operator.render.valkey import ROLE_LABEL

from .examples import EXAMPLE_FILES, agent_cache

PASSWORD = "s3cret-Password_1"


def cache_of(spec: dict, name: str = "c1", namespace: str = "agents") -> Cache:
    return Cache.from_body({"metadata": {"name": name, "namespace": namespace, "uid": "u"}, "spec": spec})


def example(stem: str) -> Cache:
    (path,) = [p for p in EXAMPLE_FILES if p.stem == stem]
    return Cache.from_body(agent_cache(path))


def rendered(cache: Cache) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render_children(cache, PASSWORD)}


def agent_config(cache: Cache) -> dict:
    config_map = rendered(cache)[("ConfigMap", names.config_map_name(cache.name))]
    return yaml.safe_load(config_map["data"][names.CONFIG_FILE_KEY])


def pod_specs(objects):
    for obj in objects:
        if obj["kind"] in ("StatefulSet", "Job"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


@pytest.mark.parametrize("version", ["1.29", "1.35"])
@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_every_child_of_every_example_validates_strictly(path, version):
    objects = render_children(Cache.from_body(agent_cache(path)), PASSWORD)
    assert objects
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(
                f"{obj['kind']}/{obj['metadata']['name']} invalid for {version}: {error.message} at {list(error.path)}"
            )


def test_expected_children_per_example():
    kinds = {
        stem: sorted(k for k, _ in rendered(example(stem)))
        for stem in ["memory", "file", "external", "managed-standalone", "replicated", "cluster"]
    }
    assert kinds["memory"] == kinds["file"] == kinds["external"] == ["ConfigMap"]
    common = ["ConfigMap", "ConfigMap", "NetworkPolicy", "PodDisruptionBudget", "Secret", "Service", "Service"]
    assert kinds["managed-standalone"] == sorted([*common, "StatefulSet"])
    assert kinds["replicated"] == sorted([*common, "Service", "StatefulSet", "StatefulSet", "Service", "StatefulSet"])
    assert kinds["cluster"] == sorted([*common, "StatefulSet", "Job"])


def test_memory_config_has_the_design_shape():
    config = agent_config(example("memory"))
    assert config["cache"] == {
        "enabled": True,
        "backend": "memory",
        "default_ttl": 600,
        "key_prefix": "agentcache:agents:memory-cache:",
        "compression": True,
        "max_size": 5000,
        "cleanup_interval": 60,
    }
    assert "services" not in config
    assert config["sidecar"] == {
        "socket_path": "/var/run/agentcache/cache.sock",
        "socket_mode": "0666",
        "metrics_host": "0.0.0.0",
        "metrics_port": 9464,
        "fallback": "memory",
        "log_level": "info",
    }


def test_the_near_cache_is_rendered_for_valkey_only_from_spec_sidecar_near_cache():
    assert agent_config(example("managed-standalone"))["sidecar"]["near_cache"] == {
        "enabled": True,
        "max_bytes": 32 * 1024 * 1024,
    }
    assert "near_cache" not in agent_config(example("memory"))["sidecar"]
    off = cache_of({"backend": "valkey", "sidecar": {"nearCache": {"enabled": False, "maxBytes": "1.5Mi"}}})
    assert agent_config(off)["sidecar"]["near_cache"] == {"enabled": False, "max_bytes": 1572864}
    with pytest.raises(SpecError, match="spec.sidecar.nearCache.maxBytes: '512' is below 1Ki"):
        render_children(cache_of({"backend": "valkey", "sidecar": {"nearCache": {"maxBytes": "512"}}}), PASSWORD)


def test_file_config_uses_the_cache_directory():
    cache = agent_config(example("file"))["cache"]
    assert cache["storage_dir"] == "/var/cache/agentcache"
    assert cache["max_file_size"] == 1048576 and cache["cleanup_interval"] == 600
    assert cache["size_limit"] == int(512 * 1024 * 1024 * 0.9)


@pytest.mark.parametrize("stem", ["memory", "file", "external", "managed-standalone", "replicated", "cluster"])
def test_rendered_config_is_accepted_by_the_sidecar_without_warnings(stem):
    """The contract between operator and sidecar: the sidecar's own loader takes every rendered config as is."""
    from agentcache_sidecar.config import parse_settings

    loaded = parse_settings(agent_config(example(stem)), environ={"AGENTCACHE_VALKEY_PASSWORD": "pw"})
    assert loaded.warnings == []
    assert loaded.settings.sidecar.metrics_host == "0.0.0.0"
    assert loaded.settings.sidecar.socket_mode == 0o666


def test_managed_config_points_at_the_service_with_the_password_from_env():
    valkey = agent_config(example("managed-standalone"))["services"]["valkey"]["config"]
    assert valkey == {
        "url": "valkey://llm-cache-valkey.agents.svc:6379",
        "db": 0,
        "password": "${AGENTCACHE_VALKEY_PASSWORD:}",
        "username": "agentcache-llm-cache",
    }
    assert endpoint(example("managed-standalone")) == "valkey://llm-cache-valkey.agents.svc:6379/0"


def test_external_config_keeps_url_db_and_prefix():
    config = agent_config(example("external"))
    assert config["services"]["valkey"]["config"]["url"] == "valkey://valkey.shared-services.svc:6379"
    assert config["services"]["valkey"]["config"]["db"] == 1
    assert config["cache"]["key_prefix"] == "team-a:cache:"
    assert config["sidecar"]["fallback"] == "miss"
    assert endpoint(example("external")) == "valkey://valkey.shared-services.svc:6379/1"


def test_cluster_config_says_cluster():
    assert agent_config(example("cluster"))["services"]["valkey"]["config"]["cluster"] is True
    assert "cluster" not in agent_config(example("managed-standalone"))["services"]["valkey"]["config"]


@pytest.mark.parametrize(
    "url, fix",
    [
        ("valkey://user:hunter2@host:6379", "passwordSecretRef"),
        ("valkey://host:99999", "not a valid URL"),
        ("valkey://:6379", "names no host"),
    ],
)
def test_external_url_the_operator_cannot_use_is_a_clear_error(url, fix):
    cache = cache_of({"backend": "valkey", "valkey": {"mode": "external", "url": url}})
    with pytest.raises(SpecError, match=fix):
        render_children(cache)


def test_valkey_conf_takes_memory_settings_from_the_spec_and_holds_no_secret():
    objects = rendered(example("replicated"))
    conf = objects[("ConfigMap", "replicated-cache-valkey-config")]["data"]["valkey.conf"]
    assert "maxmemory 536870912\n" in conf and "maxmemory-policy allkeys-lfu\n" in conf
    assert "appendonly yes" in conf
    for obj in objects.values():
        if obj["kind"] == "ConfigMap":
            assert PASSWORD not in yaml.safe_dump(obj)
    secret = objects[("Secret", "replicated-cache-valkey-auth")]
    assert base64.b64decode(secret["data"]["password"]).decode() == PASSWORD and secret["immutable"] is True


def test_replicated_has_a_primary_and_replicas_with_their_own_services():
    objects = rendered(example("replicated"))
    primary = objects[("StatefulSet", "replicated-cache-valkey")]
    replica = objects[("StatefulSet", "replicated-cache-valkey-replica")]
    assert primary["spec"]["replicas"] == 1 and replica["spec"]["replicas"] == 2
    env = {e["name"]: e for e in replica["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["VALKEY_PRIMARY"]["value"] == "replicated-cache-valkey.agents.svc:6379"
    assert objects[("Service", "replicated-cache-valkey")]["spec"]["selector"][ROLE_LABEL] == "primary"
    assert objects[("Service", "replicated-cache-valkey-replicas")]["spec"]["selector"][ROLE_LABEL] == "replica"
    claim = primary["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    resources = primary["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "200m", "memory": "768Mi"} and resources["limits"] == {"memory": "768Mi"}


def test_cluster_runs_shards_times_one_plus_replicas_and_a_bootstrap_job():
    cache = cache_of({"backend": "valkey", "valkey": {"topology": "cluster", "shards": 4, "replicasPerShard": 2}})
    objects = rendered(cache)
    statefulset = objects[("StatefulSet", "c1-valkey")]
    assert statefulset["spec"]["replicas"] == 12
    assert "cluster-enabled yes" in objects[("ConfigMap", "c1-valkey-config")]["data"]["valkey.conf"]
    command = objects[("Job", "c1-valkey-bootstrap")]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["sh", "/etc/valkey/bootstrap.sh", "2"] and len(command) == 3 + 12
    assert command[3] == "c1-valkey-0.c1-valkey-headless.agents.svc:6379"
    assert objects[("Service", "c1-valkey-headless")]["spec"]["clusterIP"] == "None"
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VALKEY_PEERS"].split() == command[3:], "heal.sh looks for peers among every pod"
    assert container["readinessProbe"]["exec"]["command"] == ["sh", "/etc/valkey/ready.sh"]
    assert {"heal.sh", "ready.sh", "start.sh", "handover.sh"} <= set(objects[("ConfigMap", "c1-valkey-config")]["data"])
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sh", "/etc/valkey/handover.sh"]


def test_valkey_and_sentinel_pods_prefer_separate_nodes():
    for stem in ["managed-standalone", "replicated", "cluster"]:
        for obj in render_children(example(stem), PASSWORD):
            if obj["kind"] != "StatefulSet":
                continue
            template = obj["spec"]["template"]
            (preferred,) = template["spec"]["affinity"]["podAntiAffinity"][
                "preferredDuringSchedulingIgnoredDuringExecution"
            ]
            term = preferred["podAffinityTerm"]
            assert term["topologyKey"] == "kubernetes.io/hostname", obj["metadata"]["name"]
            selector = term["labelSelector"]["matchLabels"]
            assert selector.items() <= template["metadata"]["labels"].items(), "the pod avoids its own kind"
            assert "required" not in str(template["spec"]["affinity"]), "only preferred: small clusters still schedule"


def test_every_pod_runs_locked_down():
    for stem in ["managed-standalone", "replicated", "cluster"]:
        for name, pod in pod_specs(render_children(example(stem), PASSWORD)):
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert pod["automountServiceAccountToken"] is False, name
            for container in pod["containers"]:
                context = container["securityContext"]
                assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
                assert context["capabilities"] == {"drop": ["ALL"]}
                assert container["resources"]["limits"]["memory"]


def test_config_hash_rolls_pods_only_when_the_config_changes():
    def pod_hash(spec):
        statefulset = rendered(cache_of(spec))[("StatefulSet", "c1-valkey")]
        return statefulset["spec"]["template"]["metadata"]["annotations"][names.ANNOTATION_CONFIG_HASH]

    base = {"backend": "valkey", "valkey": {"maxMemory": "256Mi"}}
    assert pod_hash(base) == pod_hash(base)
    assert pod_hash(base) != pod_hash({"backend": "valkey", "valkey": {"maxMemory": "512Mi"}})
    assert pod_hash(base) == pod_hash({**base, "defaultTTL": 5})


def test_a_new_password_rolls_the_valkey_pods():
    """A deleted password Secret is re-created with a new password: Valkey must restart to use it."""
    cache = example("managed-standalone")
    before = {o["metadata"]["name"]: o for o in render_children(cache, "old-password") if o["kind"] == "StatefulSet"}
    after = {o["metadata"]["name"]: o for o in render_children(cache, "new-password") if o["kind"] == "StatefulSet"}
    for name, statefulset in before.items():
        old = statefulset["spec"]["template"]["metadata"]["annotations"][names.ANNOTATION_CONFIG_HASH]
        new = after[name]["spec"]["template"]["metadata"]["annotations"][names.ANNOTATION_CONFIG_HASH]
        assert old != new


def test_network_policy_admits_only_this_caches_agents_and_its_own_valkey_pods():
    policy = rendered(example("managed-standalone"))[("NetworkPolicy", "llm-cache-valkey")]
    sources = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    agents = {"podSelector": {"matchLabels": {names.LABEL_CACHE: "llm-cache", names.LABEL_INJECTED: "true"}}}
    assert agents in sources
    assert all(list(peer) == ["podSelector"] for peer in sources), "no namespaceSelector: this namespace only"
    others = [peer["podSelector"]["matchLabels"] for peer in sources if peer != agents]
    assert others and all(labels.get(names.LABEL_INSTANCE) == "llm-cache" for labels in others), (
        "besides the agents, only this cache's own pods (the operator never connects to Valkey)"
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"]


def test_network_policy_admits_the_pods_the_injector_gives_a_sidecar():
    body = agent_cache(next(p for p in EXAMPLE_FILES if p.stem == "managed-standalone"))
    policy = rendered(Cache.from_body(body))[("NetworkPolicy", "llm-cache-valkey")]
    (agents,) = [peer["podSelector"]["matchLabels"] for peer in policy["spec"]["ingress"][0]["from"]]
    pod = {
        "metadata": {"name": "agent", "labels": {names.LABEL_CACHE: "llm-cache"}},
        "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
    }
    patched = jsonpatch.apply_patch(pod, build_patch(pod, body, "agents", SidecarDefaults()))

    def admitted(labels: dict) -> bool:
        return all(labels.get(key) == value for key, value in agents.items())

    assert admitted(patched["metadata"]["labels"])
    assert not admitted(pod["metadata"]["labels"]), "a labelled pod without the sidecar is not admitted"


def test_pdb_covers_all_valkey_pods():
    objects = rendered(example("replicated"))
    pdb = objects[("PodDisruptionBudget", "replicated-cache-valkey")]
    for kind, name in [("StatefulSet", "replicated-cache-valkey"), ("StatefulSet", "replicated-cache-valkey-replica")]:
        pod_labels = objects[(kind, name)]["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_rendering_is_deterministic_and_never_leaks_the_password_outside_the_secret():
    cache = example("cluster")
    assert render_children(cache, PASSWORD) == render_children(cache, PASSWORD)
    for obj in render_children(cache, PASSWORD):
        if obj["kind"] != "Secret":
            assert PASSWORD not in yaml.safe_dump(obj)


def test_managed_valkey_without_a_password_is_refused():
    with pytest.raises(ValueError, match="password"):
        render_children(example("managed-standalone"))


@pytest.mark.parametrize(
    "quantity, expected",
    [
        (1024, 1024),
        ("256Mi", 256 * 2**20),
        ("1Gi", 2**30),
        ("1G", 10**9),
        ("1.5Ki", 1536),
        ("1e3", 1000),
        ("100k", 100_000),
    ],
)
def test_quantities_become_bytes(quantity, expected):
    assert quantity_bytes(quantity, "f") == expected


def test_a_bad_quantity_names_the_field():
    with pytest.raises(SpecError, match="spec.valkey.maxMemory: 'lots'"):
        quantity_bytes("lots", "spec.valkey.maxMemory")


def _name_limit() -> int:
    from agentcache_operator import crd

    rule = next(
        r["rule"] for r in crd.openapi_schema()["x-kubernetes-validations"] if "size(self.metadata.name)" in r["rule"]
    )
    return int(rule.rsplit("<=", 1)[1])


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_the_longest_name_the_crd_allows_names_every_child_and_its_pods(path):
    """A StatefulSet's pods carry controller-revision-hash=<statefulset>-<10 chars>, a label of at most 63."""
    body = agent_cache(path)
    body["metadata"]["name"] = "a" * _name_limit()
    for obj in render_children(Cache.from_body(body), PASSWORD):
        limit = 63 - 11 if obj["kind"] == "StatefulSet" else 63
        assert len(obj["metadata"]["name"]) <= limit, (obj["kind"], obj["metadata"]["name"])
        for value in (obj["metadata"].get("labels") or {}).values():
            assert len(value) <= 63


def test_claims_go_with_the_cache_but_survive_a_scale_down():
    for stem in ["replicated", "cluster"]:
        cache = example(stem)
        cache.valkey["persistence"]["enabled"] = True
        claiming = [o for o in render_children(cache, PASSWORD) if "volumeClaimTemplates" in o.get("spec", {})]
        assert claiming
        for obj in claiming:
            assert obj["spec"]["persistentVolumeClaimRetentionPolicy"] == {
                "whenDeleted": "Delete",
                "whenScaled": "Retain",
            }, obj["metadata"]["name"]


def test_valkey_volumes_are_not_chowned_on_every_start():
    for stem in ["managed-standalone", "replicated", "cluster"]:
        for obj in render_children(example(stem), PASSWORD):
            if obj["kind"] == "StatefulSet":
                assert obj["spec"]["template"]["spec"]["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"


def test_replicated_runs_three_sentinels_that_the_sidecar_and_the_valkey_pods_ask_for_the_primary():
    objects = rendered(example("replicated"))
    sentinels = objects[("StatefulSet", "replicated-cache-sentinel")]
    assert sentinels["spec"]["replicas"] == 3 and sentinels["spec"]["serviceName"] == "replicated-cache-sentinel"
    assert objects[("Service", "replicated-cache-sentinel")]["spec"]["clusterIP"] == "None"
    (container,) = sentinels["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["sh", "/etc/valkey/sentinel.sh"]
    addresses = [f"replicated-cache-sentinel-{i}.replicated-cache-sentinel.agents.svc:26379" for i in range(3)]
    assert agent_config(example("replicated"))["services"]["valkey"]["config"]["sentinel"] == {
        "master_name": "replicated-cache",
        "addresses": addresses,
    }
    for name in ["replicated-cache-valkey", "replicated-cache-valkey-replica"]:
        env = {
            e["name"]: e.get("value")
            for e in objects[("StatefulSet", name)]["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["VALKEY_SENTINELS"].split() == addresses and env["VALKEY_MASTER_NAME"] == "replicated-cache"
    pdb = objects[("PodDisruptionBudget", "replicated-cache-valkey")]["spec"]["selector"]["matchLabels"]
    assert pdb.items() <= sentinels["spec"]["template"]["metadata"]["labels"].items()
    policy = objects[("NetworkPolicy", "replicated-cache-valkey")]
    assert {"protocol": "TCP", "port": 26379} in policy["spec"]["ingress"][0]["ports"], "agents reach the sentinels"
    assert "sentinel" not in agent_config(example("managed-standalone"))["services"]["valkey"]["config"]
