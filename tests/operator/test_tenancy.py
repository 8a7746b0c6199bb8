"""Prefix nesting on a shared external Valkey is refused with the other cache named; ACL rules are confined."""

from __future__ import annotations

import pytest

from agentcache_operator import names
from agentcache_operator.reconcile import PrefixConflict, Reconciler
from agentcache_operator.render import Cache, SpecError
from agentcache_operator.render.tenancy import SIDECAR_COMMANDS, acl_rule, prefix_conflict
from agentcache_operator.render.valkey import render_password_secret


def body(
    name: str,
    prefix: str = "",
    url: str = "valkey://valkey.shared.svc:6379",
    db: int = 1,
    namespace: str = "agents",
    backend: str = "valkey",
    mode: str = "external",
    created: str = "",
) -> dict:
    valkey = {"mode": mode, "db": db, **({"url": url} if mode == "external" else {})}
    return {
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": {"backend": backend, "keyPrefix": prefix, "valkey": valkey},
    }


def cache(name: str, prefix: str = "", **kwargs) -> Cache:
    return Cache.from_body(body(name, prefix, **kwargs))


def test_nesting_prefixes_on_one_valkey_and_db_conflict_and_name_the_other_cache():
    wide, narrow = cache("wide", "a:"), cache("narrow", "a:b:")
    message = prefix_conflict(wide, [narrow])
    assert message and "agents/narrow" in message and "'a:b:'" in message and "nests" in message
    assert "agents/wide" in prefix_conflict(narrow, [wide])
    assert "is the same as" in prefix_conflict(cache("twin", "a:"), [wide])


def test_the_default_prefix_of_one_cache_never_nests_another_default_prefix():
    assert prefix_conflict(cache("llm"), [cache("llm-eu"), cache("llm", namespace="other")]) is None


def test_separate_servers_dbs_and_backends_do_not_conflict():
    wide = cache("wide", "a:")
    assert prefix_conflict(wide, [cache("n", "a:b:", db=2)]) is None
    assert prefix_conflict(wide, [cache("n", "a:b:", url="valkey://other.svc:6379")]) is None
    assert prefix_conflict(wide, [cache("n", "a:b:", backend="memory")]) is None
    assert prefix_conflict(wide, [cache("n", "a:b:", mode="managed")]) is None
    assert prefix_conflict(wide, [wide]) is None, "a cache never conflicts with itself"
    same_host = cache("n", "a:b:", url="valkey://VALKEY.shared.svc:6379/1")
    assert prefix_conflict(wide, [same_host]) is not None, "host names compare case-insensitively"


def test_acl_rule_confines_keys_and_commands():
    rule = acl_rule("agentcache:agents:llm:")
    assert "~agentcache:agents:llm:*" in rule.split() and "-@all" in rule.split()
    assert rule.split().count("resetkeys") == 1
    for forbidden in ("keys", "flushall", "flushdb", "config", "debug", "acl", "publish", "psubscribe", "client"):
        assert forbidden not in SIDECAR_COMMANDS and f"+{forbidden}" not in rule.split()
    assert [word for word in rule.split() if word.startswith("&")] == ["&__redis__:invalidate"]
    for unsafe in ("", "a b:", "a*:", "a\\:"):
        with pytest.raises(SpecError):
            acl_rule(unsafe)


async def test_the_operator_fails_the_younger_of_two_nesting_caches_and_names_the_older():
    reconciler = Reconciler(client=None, adopt=lambda children, owner: None)  # type: ignore[arg-type]
    older = body("first", "a:", created="2026-01-01T00:00:00Z")
    younger = body("second", "a:b:", created="2026-01-02T00:00:00Z")
    for cache_body in (older, younger):
        reconciler.observe_cache(cache_body)
    with pytest.raises(PrefixConflict, match="agents/first"):
        await reconciler._desired(Cache.from_body(younger), younger)
    assert prefix_conflict(Cache.from_body(older), reconciler._older_caches(older)) is None


async def test_an_older_operators_immutable_secret_is_made_anew_with_the_sidecar_password():
    """Upgrade: the managed Valkey's Secret lacks ``sidecar-password`` and is immutable, so it is re-created
    (same password) instead of being rejected by the API server."""
    cache = Cache.from_body({**body("managed", mode="managed"), "metadata": {"name": "managed", "namespace": "agents"}})
    desired = render_password_secret(cache, "the-password")
    old = {**desired, "data": {"password": desired["data"]["password"]}, "metadata": {**desired["metadata"]}}
    calls = []

    class Client:
        async def get(self, kind, namespace, name):
            calls.append(("get", kind))
            return old

        async def delete(self, kind, namespace, name):
            calls.append(("delete", kind, name))

        async def apply(self, obj):
            calls.append(("apply", obj["kind"], sorted(obj["data"])))
            return obj

    written = await Reconciler(Client(), adopt=lambda children, owner: None)._write_one(cache, desired)  # type: ignore[arg-type]
    assert calls == [
        ("get", "Secret"),
        ("delete", "Secret", desired["metadata"]["name"]),
        ("apply", "Secret", ["password", names.VALKEY_SIDECAR_PASSWORD_KEY]),
    ]
    assert written["data"]["password"] == old["data"]["password"]
