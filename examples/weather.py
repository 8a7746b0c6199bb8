"""Seed: "The @cached Decorator" — weather per location, cached for 30 minutes.

Run with a sidecar listening on $AGENTCACHE_SOCKET:  python examples/weather.py
"""

import asyncio
from dataclasses import dataclass

from agentcache import cached, get_cache

API_CALLS = []


@dataclass
class Task:
    """Stands in for AgentUp's a2a Task."""

    input: str


async def external_weather_api(location: str) -> dict:
    """A fake weather service; a real one would be an HTTP call."""
    API_CALLS.append(location)
    await asyncio.sleep(0.05)
    return {"location": location, "temp_c": 18, "conditions": "cloudy"}


@cached(ttl=1800, key_template="weather:{location}")
async def get_weather(task: Task, location: str):
    """Get weather data with caching."""
    return await external_weather_api(location)


async def main() -> None:
    cache = get_cache()
    await cache.delete("weather:london")
    first = await get_weather(Task("weather in london?"), "london")
    second = await get_weather(Task("and again?"), "london")
    assert first == second and API_CALLS == ["london"], API_CALLS
    print(
        f"weather:london = {second} (API called {len(API_CALLS)} time, ttl {await cache.ttl('weather:london'):.0f} s)"
    )
    await cache.close()


if __name__ == "__main__":
    asyncio.run(main())
