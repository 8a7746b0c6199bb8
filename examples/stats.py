"""Seed: "Cache Statistics" — hits, misses, hit rate, memory and key count from the sidecar."""

import asyncio

from agentcache import get_cache


async def get_cache_stats():
    """Get cache performance statistics."""
    cache = get_cache()
    if hasattr(cache, "stats"):
        stats = await cache.stats()
        return {
            "hits": stats.get("hits", 0),
            "misses": stats.get("misses", 0),
            "hit_rate": stats.get("hit_rate", 0.0),
            "memory_usage": stats.get("memory_usage", 0),
            "key_count": stats.get("key_count", 0),
        }
    return {"message": "Stats not available for this cache backend"}


async def main() -> None:
    cache = get_cache()
    before = await get_cache_stats()
    await cache.set("stats:example", 1)
    await cache.get("stats:example")
    await cache.get("stats:absent")
    after = await get_cache_stats()
    assert after["hits"] == before["hits"] + 1 and after["misses"] == before["misses"] + 1
    print(after)
    await cache.close()


if __name__ == "__main__":
    asyncio.run(main())
