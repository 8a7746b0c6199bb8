"""The LangChain adapters beyond LangChain's own suites: keys, scopes, serialization, degradation."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.load import dumps
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation
from langchain_core.prompts import PromptTemplate

import agentcache.client
from agentcache import AsyncCache, Cache, CacheError, cached
from agentcache.integrations import langchain as integration
from agentcache.integrations.langchain import AgentCacheByteStore, AgentCacheLLMCache, llm_cache_key

ANSWER = AIMessage("It is sunny.", tool_calls=[{"name": "weather", "args": {"city": "Oslo"}, "id": "call-1"}])


@pytest.fixture
def root(sidecar):
    """The sidecar's whole key space (under its key_prefix), emptied for each test."""
    with Cache(sidecar.socket_path) as client:
        client.clear()
        yield client


def test_keys_are_the_cached_decorators_inside_the_scope(root):
    @cached(key_template="{llm_string_hash}:{prompt_hash}")
    def model_call(prompt: str, llm_string: str) -> None: ...

    key = llm_cache_key("What is a cache?", "gpt-4o;temperature=0")
    assert key == model_call.cache_key("What is a cache?", "gpt-4o;temperature=0")
    AgentCacheLLMCache(root).update("What is a cache?", "gpt-4o;temperature=0", [Generation(text="x")])
    AgentCacheLLMCache(root.scoped("user:1")).update("What is a cache?", "gpt-4o;temperature=0", [])
    assert root.keys() == [f"langchain:llm:{key}", f"user:1:langchain:llm:{key}"]


def test_scopes_never_see_each_other(root):
    alice, bob = AgentCacheLLMCache(root.scoped("user:alice")), AgentCacheLLMCache(root.scoped("user:bob"))
    store = AgentCacheByteStore(root.scoped("user:alice"))
    alice.update("p", "llm", [Generation(text="alice")])
    store.mset([("k", b"v")])
    assert bob.lookup("p", "llm") is None
    bob.update("p", "llm", [Generation(text="bob")])
    alice.clear()
    assert alice.lookup("p", "llm") is None and bob.lookup("p", "llm") == [Generation(text="bob")]
    assert list(store.yield_keys()) == ["k"]


def test_values_are_langchain_json_with_the_ttl(root):
    AgentCacheLLMCache(root, ttl=60).update("p", "llm", [ChatGeneration(message=ANSWER)])
    stored = root.get(f"langchain:llm:{llm_cache_key('p', 'llm')}")
    assert json.loads(stored)[0]["id"] == ["langchain", "schema", "output", "ChatGeneration"]
    assert 55 < root.ttl(f"langchain:llm:{llm_cache_key('p', 'llm')}") <= 60


def test_a_chat_models_calls_are_cached_with_tool_calls(root):
    model = FakeMessagesListChatModel(responses=[ANSWER, AIMessage("other")], cache=AgentCacheLLMCache(root))
    first, second = model.invoke("Weather in Oslo?"), model.invoke("Weather in Oslo?")
    assert model.i == 1, "the second call must not reach the model"
    assert first.tool_calls == second.tool_calls == ANSWER.tool_calls and second.content == ANSWER.content
    assert model.invoke("Weather in Rome?").content == "other"


async def test_a_chat_models_async_calls_are_cached(sidecar):
    async with AsyncCache(sidecar.socket_path) as client:
        await client.clear()
        model = FakeMessagesListChatModel(responses=[ANSWER, AIMessage("other")], cache=AgentCacheLLMCache(client))
        first, second = await model.ainvoke("Weather in Oslo?"), await model.ainvoke("Weather in Oslo?")
    assert model.i == 1 and first.tool_calls == second.tool_calls == ANSWER.tool_calls


@pytest.mark.parametrize(
    "payload",
    [
        dumps([PromptTemplate.from_template("{x}")]).encode(),  # a class outside generations and messages
        b"\x80\x04not json",
        "a JSON string, not generations",
    ],
)
def test_a_value_that_is_not_generations_is_a_miss(root, payload, caplog):
    root.set(f"langchain:llm:{llm_cache_key('p', 'llm')}", payload)
    with caplog.at_level(logging.WARNING, "agentcache"):
        assert AgentCacheLLMCache(root).lookup("p", "llm") is None
    assert "no readable generations" in caplog.text


async def test_an_unreachable_sidecar_only_makes_calls_uncached(tmp_path, caplog):
    llm_cache = AgentCacheLLMCache(socket_path=str(tmp_path / "absent.sock"))
    model = FakeMessagesListChatModel(responses=[AIMessage("a"), AIMessage("b")], cache=llm_cache)
    with caplog.at_level(logging.WARNING, "agentcache"):
        assert [model.invoke("q").content, (await model.ainvoke("q")).content] == ["a", "b"]
    assert caplog.text.count("is unreachable") == 1
    with pytest.raises(CacheError):
        llm_cache.clear()


def test_the_default_is_the_process_wide_cache_on_the_agents_socket(monkeypatch, tmp_path):
    monkeypatch.setattr(agentcache.client, "_default_cache", None)
    monkeypatch.setenv("AGENTCACHE_SOCKET", str(tmp_path / "agent.sock"))
    assert AgentCacheLLMCache().socket_path == AgentCacheByteStore().socket_path == str(tmp_path / "agent.sock")
    assert AgentCacheByteStore(socket_path="other.sock").socket_path == "other.sock"
    with pytest.raises(TypeError):
        AgentCacheByteStore(Cache(), socket_path="x.sock")


def test_store_prefixes_are_literal(root):
    store = AgentCacheByteStore(root)
    store.mset([("a*b", b"1"), ("a*c", b"2"), ("ab", b"3"), ("a[b]", b"4")])
    assert list(store.yield_keys(prefix="a*")) == ["a*b", "a*c"]
    assert list(store.yield_keys(prefix="a[")) == ["a[b]"]
    with pytest.raises(TypeError, match="stores bytes"):
        store.mset([("k", "text")])


async def test_store_listing_refuses_to_truncate(root, monkeypatch):
    store = AgentCacheByteStore(root)
    store.mset([("a", b"1"), ("b", b"2"), ("c", b"3")])
    monkeypatch.setattr(integration, "LIST_LIMIT", 3)
    with pytest.raises(CacheError, match="longer prefix"):
        list(store.yield_keys())
    with pytest.raises(CacheError, match="longer prefix"):
        [key async for key in store.ayield_keys()]
    assert list(store.yield_keys(prefix="b")) == ["b"]


def test_embeddings_as_cache_backed_embeddings_stores_them(root):
    """CacheBackedEmbeddings keeps each vector as JSON bytes under namespace + a hash of the text."""
    store = AgentCacheByteStore(root, ttl=0)
    vectors = {f"emb:{i}": json.dumps([i / 3, -i, 1e-9]).encode() for i in range(50)}
    store.mset(list(vectors.items()))
    assert store.mget([*vectors, "emb:absent"]) == [*vectors.values(), None]
    assert root.ttl("langchain:store:emb:0") == -1
    store.mdelete(list(vectors)[:25])
    assert sorted(store.yield_keys(prefix="emb:")) == sorted(list(vectors)[25:])


def _langchain_modules_after(imports: str) -> str:
    code = f"import sys, {imports}; print(sorted(m for m in sys.modules if m.startswith('langchain')))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_importing_the_sdk_does_not_import_langchain():
    assert _langchain_modules_after("agentcache, agentcache.integrations").strip() == "[]"
    assert "langchain_core" in _langchain_modules_after("agentcache.integrations.langchain")
