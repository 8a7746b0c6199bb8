"""The CRD file: one source, a valid CRD, a schema that admits the examples and rejects bad specs."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from agentcache_operator import crd, names
from agentcache_operator.crd import schema_errors, with_defaults

from .examples import CHART_CRD, EXAMPLE_FILES, agent_cache


def test_operator_reads_the_chart_file_itself():
    assert crd.CRD_FILE.resolve() == CHART_CRD.resolve()
    assert crd.crd() == yaml.safe_load(CHART_CRD.read_text())


@pytest.mark.parametrize("version", ["1.29", "1.35"])
def test_crd_is_a_valid_custom_resource_definition(version):
    kubernetes_validate.validate(crd.crd(), version, strict=True)


def test_crd_names_match_the_naming_contract():
    spec = crd.crd()["spec"]
    assert spec["group"] == names.GROUP
    assert spec["names"]["kind"] == names.KIND
    assert spec["names"]["plural"] == names.PLURAL
    assert spec["names"]["shortNames"] == [names.SHORT_NAME]
    assert spec["scope"] == "Namespaced"
    (version,) = spec["versions"]
    assert version["name"] == names.VERSION and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Backend", "Phase", "Endpoint", "Age"]


def _walk(schema, path="spec"):
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")


def test_schema_is_structural():
    """Every node has a type, or is int-or-string with exactly the anyOf the API server allows."""
    for path, node in _walk(crd.openapi_schema()):
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node and node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert "type" in node, f"{path} has no type"


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_every_example_matches_the_schema(example):
    assert schema_errors(agent_cache(example)) == []


BAD_SPECS = [
    ({"backend": "redis"}, "spec.backend"),
    ({"backend": "memory", "defaultTTL": -1}, "spec.defaultTTL"),
    ({"backend": "memory", "memory": {"maxSize": 0}}, "spec.memory.maxSize"),
    ({"backend": "valkey", "valkey": {"maxMemory": "lots"}}, "spec.valkey.maxMemory"),
    ({"backend": "valkey", "valkey": {"maxMemoryPolicy": "lru"}}, "spec.valkey.maxMemoryPolicy"),
    ({"backend": "valkey", "valkey": {"topology": "ring"}}, "spec.valkey.topology"),
    ({"backend": "valkey", "valkey": {"mode": "external", "url": "http://x"}}, "spec.valkey.url"),
    ({"backend": "valkey", "valkey": {"db": 16}}, "spec.valkey.db"),
    ({"backend": "file", "file": {"sizeLimit": "-1Gi"}}, "spec.file.sizeLimit"),
    ({"backend": "memory", "sidecar": {"fallback": "crash"}}, "spec.sidecar.fallback"),
]


@pytest.mark.parametrize(("spec", "field"), BAD_SPECS, ids=[f for _, f in BAD_SPECS])
def test_schema_rejects_bad_values_naming_the_field(spec, field):
    body = {"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": {"name": "x"}, "spec": spec}
    errors = schema_errors(body)
    assert errors and all(e.startswith(field) for e in errors), errors


def test_cel_rules_state_the_invariants():
    rules = {
        rule["message"]: rule["rule"]
        for _, node in _walk(crd.openapi_schema())
        for rule in node.get("x-kubernetes-validations", [])
    }
    assert "valkey.url is required when valkey.mode is external" in rules
    assert any("only allowed with valkey.mode: external" in m for m in rules)
    assert "valkey.persistence.size may only grow" in rules
    assert "oldSelf" in rules["valkey.persistence.size may only grow"]
    assert "a Valkey cluster needs valkey.shards >= 3" in rules


def test_defaults_come_from_the_schema():
    spec = with_defaults({"backend": "valkey"})
    assert spec["defaultTTL"] == 1800 and spec["keyPrefix"] == ""
    assert spec["valkey"]["mode"] == "managed" and spec["valkey"]["topology"] == "standalone"
    assert spec["valkey"]["maxMemory"] == "256Mi" and spec["valkey"]["persistence"]["enabled"] is False
    assert spec["valkey"]["passwordSecretRef"]["key"] == "password"
    assert spec["sidecar"] == {
        "fallback": "memory",
        "compression": True,
        "logLevel": "info",
        "resources": {},
        "nearCache": {"enabled": True, "maxBytes": "32Mi"},
    }


def test_defaults_do_not_override_given_values_nor_touch_the_input():
    given = {"backend": "memory", "memory": {"maxSize": 7}}
    snapshot = copy.deepcopy(given)
    spec = with_defaults(given)
    assert spec["memory"] == {"maxSize": 7, "cleanupInterval": 300}
    assert given == snapshot
