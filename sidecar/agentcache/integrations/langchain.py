"""LangChain on the sidecar: an LLM cache and a byte store (``pip install agentcache[langchain]``).

    from langchain_core.globals import set_llm_cache
    from agentcache.integrations.langchain import AgentCacheByteStore, AgentCacheLLMCache

    set_llm_cache(AgentCacheLLMCache())              # every model call goes through the sidecar
    store = AgentCacheByteStore()                    # e.g. for CacheBackedEmbeddings.from_bytes_store

Both take an ``AsyncCache`` or ``Cache`` (a scoped one confines them to that
scope) or a ``socket_path``; with no arguments they use the process-wide
``agentcache.get_cache()`` on ``$AGENTCACHE_SOCKET``, as ``@cached`` does.

Invariants:
- every key lives in ``scope`` (default ``langchain:llm`` / ``langchain:store``)
  inside the given cache's own scope, so ``clear()`` and ``yield_keys()`` never
  reach other keys;
- an LLM cache key is ``<hash of llm_string>:<hash of prompt>``, the hashes
  being ``agentcache.stable_hash``: the key ``@cached(key_template=
  "{llm_string_hash}:{prompt_hash}")`` gives a function of ``(prompt, llm_string)``;
- generations are stored as the JSON of ``langchain_core.load.dumps`` and read
  back with ``loads`` restricted to generation and message classes: never
  pickle, and a stored value can instantiate nothing else;
- the LLM cache can only make a model call faster, never make it fail: an
  unreachable sidecar or an unreadable value is a miss (one warning per
  cause), a refused write is a warning; ``clear`` raises, it is never on a
  model call's path. The byte store is storage and raises ``CacheError``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core._api import LangChainBetaWarning
from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import Serializable, dumps, loads
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    ChatMessageChunk,
    FunctionMessage,
    FunctionMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
    ToolMessageChunk,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation, GenerationChunk
from langchain_core.stores import ByteStore

from ..client import AsyncCache, Cache, get_cache
from ..errors import CacheError, InvalidRequest
from ..keys import stable_hash
from ..protocol import escape_glob

# ``loads`` is marked beta; silence that notice for our own calls only.
warnings.filterwarnings("ignore", category=LangChainBetaWarning, module=r"agentcache\.integrations\.langchain\Z")

log = logging.getLogger("agentcache")

LLM_SCOPE = "langchain:llm"
STORE_SCOPE = "langchain:store"
LIST_LIMIT = 10000  # the most keys one listing of the sidecar returns (its MAX_LIST_LIMIT)
_READABLE: list[type[Serializable]] = [
    Generation,
    GenerationChunk,
    ChatGeneration,
    ChatGenerationChunk,
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
    ToolMessageChunk,
    ChatMessage,
    ChatMessageChunk,
    FunctionMessage,
    FunctionMessageChunk,
]


def _views(cache: AsyncCache | Cache | None, socket_path: str | None, scope: str) -> tuple[AsyncCache, Cache]:
    """The async and sync views of ``scope`` inside ``cache``, sharing its connections (closing it closes them).

    No cache: ``AsyncCache(socket_path)`` for a path, else the process-wide ``get_cache()``.
    """
    if cache is not None and socket_path is not None:
        raise TypeError("pass either cache or socket_path, not both")
    if cache is None:
        cache = AsyncCache(socket_path) if socket_path is not None else get_cache()
    if isinstance(cache, Cache):
        return cache.as_async().scoped(scope), cache.scoped(scope)
    if isinstance(cache, AsyncCache):
        return cache.scoped(scope), cache.as_sync().scoped(scope)
    raise TypeError(f"cache must be an agentcache AsyncCache or Cache, not {type(cache).__name__}")


def llm_cache_key(prompt: str, llm_string: str) -> str:
    """The key (inside the LLM cache's scope) of one prompt for one model configuration."""
    return f"{stable_hash(llm_string)}:{stable_hash(prompt)}"


class AgentCacheLLMCache(BaseCache):
    """LangChain's LLM cache (``set_llm_cache``) in the sidecar.

    ``ttl``: seconds a response is kept (None: the sidecar's ``default_ttl``; 0: forever).
    """

    def __init__(
        self,
        cache: AsyncCache | Cache | None = None,
        *,
        socket_path: str | None = None,
        scope: str = LLM_SCOPE,
        ttl: float | None = None,
    ):
        self._async, self._sync = _views(cache, socket_path, scope)
        self.ttl = ttl
        self._warned: set[str] = set()

    @property
    def socket_path(self) -> str:
        return self._async.socket_path

    def _degrade(self, action: str, exc: CacheError) -> None:
        if exc.code not in self._warned:
            self._warned.add(exc.code)
            log.warning("agentcache: LangChain LLM cache %s failed, the model is called instead: %s", action, exc)

    def _decode(self, key: str, data: Any) -> RETURN_VAL_TYPE | None:
        try:
            return loads(data.decode("utf-8"), allowed_objects=_READABLE)
        except Exception as exc:  # whatever the stored value is, it reads as a miss
            self._degrade("reading", CacheError(f"{key!r} holds no readable generations: {exc}", "unreadable"))
            return None

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The generations cached for ``prompt`` under ``llm_string``, or None."""
        key = llm_cache_key(prompt, llm_string)
        try:
            data = self._sync.get(key)
        except CacheError as exc:
            self._degrade("lookup", exc)
            return None
        return None if data is None else self._decode(key, data)

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        key = llm_cache_key(prompt, llm_string)
        try:
            data = await self._async.get(key)
        except CacheError as exc:
            self._degrade("lookup", exc)
            return None
        return None if data is None else self._decode(key, data)

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Store the generations of ``prompt`` under ``llm_string``."""
        try:
            self._sync.set(llm_cache_key(prompt, llm_string), dumps(list(return_val)).encode("utf-8"), self.ttl)
        except CacheError as exc:
            self._degrade("update", exc)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        try:
            await self._async.set(llm_cache_key(prompt, llm_string), dumps(list(return_val)).encode("utf-8"), self.ttl)
        except CacheError as exc:
            self._degrade("update", exc)

    def clear(self, **kwargs: Any) -> None:
        """Delete every response of this cache's scope (and nothing else)."""
        self._sync.clear()

    async def aclear(self, **kwargs: Any) -> None:
        await self._async.clear()


class AgentCacheByteStore(ByteStore):
    """LangChain's ``ByteStore`` in the sidecar: string keys, bytes values.

    ``ttl``: seconds a value is kept (None: the sidecar's ``default_ttl``; 0: forever).
    ``yield_keys`` lists at most ``LIST_LIMIT`` keys at once and raises
    ``InvalidRequest`` (before yielding any) when a listing would hold more.
    """

    def __init__(
        self,
        cache: AsyncCache | Cache | None = None,
        *,
        socket_path: str | None = None,
        scope: str = STORE_SCOPE,
        ttl: float | None = None,
    ):
        self._async, self._sync = _views(cache, socket_path, scope)
        self.ttl = ttl

    @property
    def socket_path(self) -> str:
        return self._async.socket_path

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        found = self._sync.get_many(keys)
        return [found[key] for key in keys]

    async def amget(self, keys: Sequence[str]) -> list[bytes | None]:
        found = await self._async.get_many(keys)
        return [found[key] for key in keys]

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        """Store every pair (a key given twice keeps its last value)."""
        self._sync.set_many(_byte_values(key_value_pairs), self.ttl)

    async def amset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        await self._async.set_many(_byte_values(key_value_pairs), self.ttl)

    def mdelete(self, keys: Sequence[str]) -> None:
        self._sync.delete_many(keys)

    async def amdelete(self, keys: Sequence[str]) -> None:
        await self._async.delete_many(keys)

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        """The keys starting with ``prefix`` (taken literally, glob characters included), sorted."""
        yield from _complete(self._sync.keys(_pattern(prefix), LIST_LIMIT))

    async def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[str]:
        for key in _complete(await self._async.keys(_pattern(prefix), LIST_LIMIT)):
            yield key


def _byte_values(pairs: Sequence[tuple[str, bytes]]) -> dict[str, bytes]:
    values = dict(pairs)
    for key, value in values.items():
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"a ByteStore stores bytes; the value of {key!r} is {type(value).__name__}")
    return values


def _pattern(prefix: str | None) -> str:
    return escape_glob(prefix or "") + "*"


def _complete(keys: list[str]) -> list[str]:
    if len(keys) >= LIST_LIMIT:
        raise InvalidRequest(f"more than {LIST_LIMIT - 1} keys match; give yield_keys a longer prefix", "too_many_keys")
    return keys
