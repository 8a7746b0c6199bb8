"""Seeds: "Manual Cache Operations" and "User-Specific Caching" — check, fetch, store.

``cache.scoped(f"user:{user_id}")`` gives each user a view that cannot read
another user's keys (AgentUp's "user data isolation").
"""

import asyncio

from agentcache import get_cache

DATABASE = {"123": {"theme": "dark", "language": "en"}, "456": {"theme": "light", "language": "fr"}}
FETCHES = []


async def fetch_user_preferences(user_id: str) -> dict:
    """A fake database read."""
    FETCHES.append(user_id)
    await asyncio.sleep(0.02)
    return DATABASE[user_id]


async def get_user_preferences(user_id: str):
    """Cache user preferences with user isolation."""
    cache = get_cache().scoped(f"user:{user_id}")
    prefs = await cache.get("preferences")
    if prefs is None:
        prefs = await fetch_user_preferences(user_id)
        await cache.set("preferences", prefs, ttl=1800)
    return prefs


async def main() -> None:
    root = get_cache()
    await root.delete_pattern("user:*")
    assert await get_user_preferences("123") == DATABASE["123"]
    assert await get_user_preferences("123") == DATABASE["123"]
    assert await get_user_preferences("456") == DATABASE["456"]
    assert FETCHES == ["123", "456"], FETCHES
    alice = root.scoped("user:123")
    assert await alice.get("user:456:preferences") is None  # cannot reach a sibling's key
    print(f"stored: {await root.keys('user:*')}; database reads: {len(FETCHES)} for 3 calls")
    await root.close()


if __name__ == "__main__":
    asyncio.run(main())
