"""Seed: "Cache Warming" — pre-populate common data with set_many (one round trip per batch).

From a shell, ``agentcache warm data.jsonl`` does the same from JSON lines.
"""

import asyncio

from agentcache import get_cache


async def get_active_users() -> list[str]:
    return ["u1", "u2", "u3"]


async def fetch_user_preferences(user_id: str) -> dict:
    return {"user": user_id, "theme": "dark"}


async def fetch_weather_data(location: str) -> dict:
    return {"location": location, "temp_c": 20}


async def warm_cache():
    """Pre-populate cache with common data."""
    cache = get_cache()
    users = await get_active_users()
    prefs = await asyncio.gather(*(fetch_user_preferences(u) for u in users))
    await cache.set_many({f"user_prefs:{u}": p for u, p in zip(users, prefs)}, ttl=3600)
    locations = ["london", "paris", "tokyo"]
    weather = await asyncio.gather(*(fetch_weather_data(loc) for loc in locations))
    await cache.set_many({f"weather:{loc}": w for loc, w in zip(locations, weather)}, ttl=1800)


async def main() -> None:
    cache = get_cache()
    await warm_cache()
    warmed = await cache.keys("user_prefs:*") + await cache.keys("weather:*")
    assert len(warmed) == 6 and await cache.get("weather:tokyo") == {"location": "tokyo", "temp_c": 20}
    print(f"warmed {len(warmed)} keys: {warmed}")
    await cache.close()


if __name__ == "__main__":
    asyncio.run(main())
