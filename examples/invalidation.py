"""Seed: "Cache Invalidation Strategies" — drop everything cached for one user.

``delete_pattern`` is always supported (the sidecar scans incrementally; it
never runs KEYS), so the seed's ``hasattr`` fallback is only kept for show.
A ``@cached`` function's key for given arguments is ``func.cache_key(...)``.
"""

import asyncio

from agentcache import cached, get_cache


@cached(ttl=600, key_template="user:{user_id}:profile")
async def load_profile(user_id: str) -> dict:
    return {"id": user_id, "name": "Alice"}


async def invalidate_user_cache(user_id: str) -> int:
    """Invalidate all cached data for a user."""
    cache = get_cache()
    if hasattr(cache, "delete_pattern"):
        return await cache.delete_pattern(f"user:{user_id}:*")
    keys_to_delete = [f"user:{user_id}:preferences", f"user:{user_id}:history", f"user:{user_id}:settings"]
    return await cache.delete_many(keys_to_delete)


async def main() -> None:
    cache = get_cache()
    await cache.delete_pattern("user:*")
    await cache.set_many(
        {
            "user:123:preferences": {"theme": "dark"},
            "user:123:history": ["q1", "q2"],
            "user:1234:preferences": {"theme": "light"},
        }
    )
    await load_profile("123")
    assert await cache.exists(load_profile.cache_key("123"))
    deleted = await invalidate_user_cache("123")
    assert deleted == 3, deleted
    assert await cache.keys("user:*") == ["user:1234:preferences"], "user 1234 is untouched"
    await cache.delete(load_profile.cache_key("1234"))  # invalidating one call
    print(f"invalidated {deleted} keys of user 123; left: {await cache.keys('user:*')}")
    await cache.close()


if __name__ == "__main__":
    asyncio.run(main())
