"""LangChain's own standard suites (``langchain-tests``), unchanged, on a real sidecar per backend.

Each class only provides the fixtures the suite asks for: an EMPTY cache or
store per test. ``test_no_overrides_DO_NOT_OVERRIDE`` (part of every suite)
fails if any of their tests is overridden or removed here.
"""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import (
    AsyncCacheTestSuite,
    BaseStoreAsyncTests,
    BaseStoreSyncTests,
    SyncCacheTestSuite,
)

from agentcache import AsyncCache, Cache
from agentcache.integrations.langchain import AgentCacheByteStore, AgentCacheLLMCache


class TestSyncLLMCache(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, sidecar):
        with Cache(sidecar.socket_path) as client:
            llm_cache = AgentCacheLLMCache(client)
            llm_cache.clear()
            yield llm_cache


class TestAsyncLLMCache(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self, sidecar):
        async with AsyncCache(sidecar.socket_path) as client:
            llm_cache = AgentCacheLLMCache(client)
            await llm_cache.aclear()
            yield llm_cache


class TestSyncByteStore(BaseStoreSyncTests[bytes]):
    @pytest.fixture
    def kv_store(self, sidecar):
        with Cache(sidecar.socket_path) as client:
            client.scoped("langchain:store").clear()
            yield AgentCacheByteStore(client)

    @pytest.fixture
    def three_values(self):
        return b"foo", b"\x00bar\xff", "bäz".encode()


class TestAsyncByteStore(BaseStoreAsyncTests[bytes]):
    @pytest.fixture
    async def kv_store(self, sidecar):
        async with AsyncCache(sidecar.socket_path) as client:
            await client.scoped("langchain:store").clear()
            yield AgentCacheByteStore(client)

    @pytest.fixture
    def three_values(self):
        return b"foo", b"\x00bar\xff", "bäz".encode()
