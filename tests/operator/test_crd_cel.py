"""The CRD's CEL rules (x-kubernetes-validations), evaluated with cel-python.

No API server can run here, so the rules are evaluated the way the API server does:
on the object after structural defaulting, each rule with ``self`` bound to the node
that declares it; transition rules (those using ``oldSelf``) only on update, when the
old object has that node too. Kubernetes' ``quantity()`` library is provided from the
operator's own quantity parser.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agentcache_operator import crd
from agentcache_operator.render.common import quantity_bytes

from .examples import EXAMPLE_FILES, agent_cache

celpy = pytest.importorskip("celpy", reason="cel-python evaluates the CRD's CEL rules (pip install cel-python)")

MISSING = object()


def _quantity(value):
    return celpy.celtypes.IntType(quantity_bytes(str(value), "quantity"))


def _compare_to(left, right):
    return celpy.celtypes.IntType((left > right) - (left < right))


FUNCTIONS = {"quantity": _quantity, "compareTo": _compare_to}
ENVIRONMENT = celpy.Environment()


def rules(schema: dict[str, Any], path: tuple[str, ...] = ()):
    """(path below the root, rule, message) for every rule in the schema."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule["rule"], rule["message"]
    for key, sub in schema.get("properties", {}).items():
        yield from rules(sub, (*path, key))


def apiserver_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it: only inside objects that are present."""
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apiserver_defaults(sub, value[key])
    return value


def _at(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return MISSING
        obj = obj[key]
    return obj


def violations(spec: dict[str, Any], old_spec: dict[str, Any] | None = None) -> list[str]:
    """Messages of the rules ``spec`` breaks (as an update of ``old_spec`` when given)."""
    schema = crd.openapi_schema()
    new = apiserver_defaults(schema, {"spec": copy.deepcopy(spec)})
    old = apiserver_defaults(schema, {"spec": copy.deepcopy(old_spec)}) if old_spec is not None else None
    broken = []
    for path, rule, message in rules(schema):
        value = _at(new, path)
        if value is MISSING:
            continue
        activation = {"self": celpy.json_to_cel(value)}
        if "oldSelf" in rule:
            old_value = _at(old, path) if old is not None else MISSING
            if old_value is MISSING:
                continue
            activation["oldSelf"] = celpy.json_to_cel(old_value)
        program = ENVIRONMENT.program(ENVIRONMENT.compile(rule), functions=FUNCTIONS)
        result = program.evaluate(activation)  # a CELEvalError when the rule cannot be evaluated
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            broken.append(message)
    return broken


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_every_example_satisfies_every_rule_on_create_and_on_reapply(path):
    spec = agent_cache(path)["spec"]
    assert violations(spec) == []
    assert violations(spec, old_spec=spec) == []


BAD = [
    ({"backend": "valkey", "valkey": {"mode": "external"}}, "valkey.url is required when valkey.mode is external"),
    ({"backend": "valkey", "valkey": {"url": "valkey://x:6379"}}, "valkey.url is only allowed with valkey.mode: external"),
    ({"backend": "valkey", "valkey": {"passwordSecretRef": {"name": "s"}}},
     "valkey.passwordSecretRef.name is only allowed with valkey.mode: external"),
    ({"backend": "valkey", "valkey": {"topology": "cluster", "shards": 2}}, "a Valkey cluster needs valkey.shards >= 3"),
    ({"backend": "valkey", "valkey": {"topology": "replicated", "replicas": 0}},
     "valkey.topology: replicated needs valkey.replicas >= 1"),
    ({"backend": "valkey", "valkey": {"topology": "cluster", "db": 2}}, "a Valkey cluster only has db 0"),
    ({"backend": "valkey", "valkey": {"mode": "external", "url": "valkey://x", "topology": "replicated"}},
     "valkey.topology: replicated is only for a managed Valkey"),
    ({"backend": "memory", "valkey": {}}, "spec.valkey is only allowed with backend: valkey"),
    ({"backend": "valkey", "file": {}}, "spec.file is only allowed with backend: file"),
]


@pytest.mark.parametrize(("spec", "message"), BAD, ids=[m for _, m in BAD])
def test_a_spec_breaking_an_invariant_gets_its_message(spec, message):
    broken = violations(spec)
    assert len(broken) == 1 and broken[0].startswith(message), broken


def _valkey(**fields):
    return {"backend": "valkey", "valkey": fields}


TRANSITIONS = [
    (_valkey(persistence={"enabled": True, "size": "2Gi"}), _valkey(persistence={"enabled": True, "size": "1Gi"}),
     "valkey.persistence.size may only grow"),
    (_valkey(persistence={"enabled": True, "size": "1Gi"}), _valkey(persistence={"enabled": True, "size": "1000M"}),
     "valkey.persistence.size may only grow"),
    (_valkey(persistence={"enabled": False}), _valkey(persistence={"enabled": True}),
     "valkey.persistence.enabled cannot change"),
    (_valkey(topology="standalone"), _valkey(topology="replicated"), "valkey.mode and valkey.topology cannot change"),
    (_valkey(topology="cluster", shards=3), _valkey(topology="cluster", shards=4), "resharding is not supported"),
]


@pytest.mark.parametrize(("old", "new", "message"), TRANSITIONS, ids=[m for *_, m in TRANSITIONS])
def test_an_update_breaking_a_transition_rule_gets_its_message(old, new, message):
    broken = violations(new, old_spec=old)
    assert len(broken) == 1 and broken[0].startswith(message), broken
    assert violations(old, old_spec=old) == []


def test_growing_the_volume_is_allowed():
    old = _valkey(persistence={"enabled": True, "size": "1Gi"})
    assert violations(_valkey(persistence={"enabled": True, "size": "2Gi"}), old_spec=old) == []
