"""The agent SDK of AgentCache (docs/design.md §4).

from agentcache import cached, get_cache

@cached(ttl=1800, key_template="weather:{location}")
async def get_weather(location: str) -> dict: ...

cache = get_cache()                      # AsyncCache on $AGENTCACHE_SOCKET
await cache.set("user:123", {"name": "Alice"}, ttl=3600)

Each public name is imported from its module on first use (``__getattr__``), so ``import agentcache`` and the
sidecar's ``import agentcache.protocol`` load nothing else; ``__version__`` reads the installed metadata then too.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

    __version__: str

_MODULE_OF = {
    "AsyncCache": "client",
    "Cache": "client",
    "Lookup": "client",
    "get_cache": "client",
    "default_socket_path": "client",
    "cached": "decorator",
    "llm_key": "keys",
    "stable_hash": "keys",
    "CacheError": "errors",
    "CacheUnavailable": "errors",
    "CacheServerError": "errors",
    "InvalidKey": "errors",
    "InvalidRequest": "errors",
    "SerializationError": "errors",
    "LockUnavailable": "errors",
    "ValueTooLarge": "errors",
    "Serializer": "serializers",
    "JsonSerializer": "serializers",
    "MsgpackSerializer": "serializers",
    "SignedPickleSerializer": "serializers",
}

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


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is not None:
        value = getattr(import_module(f".{module}", __name__), name)
    elif name == "__version__":
        from importlib.metadata import version

        value = version("agentcache")  # written once, in pyproject.toml
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})
