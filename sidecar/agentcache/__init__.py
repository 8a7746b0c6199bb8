"""The agent SDK of AgentCache (docs/design.md §4).

from agentcache import cached, get_cache

@cached(ttl=1800, key_template="weather:{location}")
async def get_weather(location: str) -> dict: ...

cache = get_cache()                      # AsyncCache on $AGENTCACHE_SOCKET
await cache.set("user:123", {"name": "Alice"}, ttl=3600)
"""

from importlib.metadata import version as _version

from .client import AsyncCache, Cache, Lookup, default_socket_path, get_cache
from .decorator import cached
from .errors import (
    CacheError,
    CacheServerError,
    CacheUnavailable,
    InvalidKey,
    InvalidRequest,
    LockUnavailable,
    SerializationError,
    ValueTooLarge,
)
from .keys import llm_key, stable_hash
from .serializers import JsonSerializer, MsgpackSerializer, Serializer, SignedPickleSerializer

__version__ = _version("agentcache")  # written once, in pyproject.toml

__all__ = [
    "AsyncCache",
    "Cache",
    "Lookup",
    "cached",
    "get_cache",
    "default_socket_path",
    "llm_key",
    "stable_hash",
    "CacheError",
    "CacheUnavailable",
    "CacheServerError",
    "InvalidKey",
    "InvalidRequest",
    "SerializationError",
    "LockUnavailable",
    "ValueTooLarge",
    "Serializer",
    "JsonSerializer",
    "MsgpackSerializer",
    "SignedPickleSerializer",
]
