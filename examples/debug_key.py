"""Seed: "Cache Debugging" — what is stored under a key and for how long.

From a shell: ``agentcache get KEY``, ``agentcache ttl KEY``, ``agentcache keys 'PATTERN'``.
"""

import asyncio

from agentcache import get_cache


async def debug_cache_key(key: str):
    """Debug specific cache key."""
    cache = get_cache()
    if await cache.exists(key):
        value = await cache.get(key)
        ttl = await cache.ttl(key) if hasattr(cache, "ttl") else "unknown"
        return {
            "key": key,
            "exists": True,
            "value_type": type(value).__name__,
            "value_size": len(str(value)),
            "ttl": ttl,
        }
    return {"key": key, "exists": False}


async def main() -> None:
    cache = get_cache()
    await cache.set("debug:example", {"answer": 42}, ttl=120)
    info = await debug_cache_key("debug:example")
    assert info["exists"] and info["value_type"] == "dict" and 0 < info["ttl"] <= 120
    assert await debug_cache_key("debug:absent") == {"key": "debug:absent", "exists": False}
    print(info)
    await cache.close()


if __name__ == "__main__":
    asyncio.run(main())
