"""Seeds: "Basic Operations" and "Batch Operations", line by line."""

import asyncio

from agentcache import get_cache


async def cache_operations_example():
    cache = get_cache()
    await cache.set("key1", "value1")  # default TTL
    await cache.set("key2", {"data": "complex"}, ttl=1800)  # 30 minutes
    assert await cache.get("key1") == "value1"
    assert await cache.get("key3", default="not found") == "not found"
    assert await cache.exists("key1") is True
    await cache.delete("key1")
    assert await cache.exists("key1") is False
    await cache.clear()  # everything under the sidecar's key_prefix
    assert await cache.keys() == []


async def batch_cache_operations():
    cache = get_cache()
    data = {
        "user:123": {"name": "Alice", "role": "admin"},
        "user:456": {"name": "Bob", "role": "user"},
        "config:theme": {"mode": "dark", "color": "blue"},
    }
    await cache.set_many(data, ttl=3600)
    values = await cache.get_many(["user:123", "user:456", "user:789"])
    assert values == {"user:123": data["user:123"], "user:456": data["user:456"], "user:789": None}
    await cache.delete_many(["user:123", "config:theme"])
    assert await cache.keys() == ["user:456"]
    return values


async def main() -> None:
    await cache_operations_example()
    values = await batch_cache_operations()
    print(f"get_many: {values}")
    await get_cache().close()


if __name__ == "__main__":
    asyncio.run(main())
