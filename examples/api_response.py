"""Seed: "API Response Caching" — external API answers keyed by endpoint and a hash of the params.

``{params_hash}`` hashes the ``params`` dict as canonical JSON, so the order of
its keys does not matter.
"""

import asyncio

from agentcache import cached, get_cache

REQUESTS = []


async def http_get_json(url: str, params: dict) -> dict:
    """A fake HTTP client call (AgentUp's page uses httpx)."""
    REQUESTS.append((url, params))
    await asyncio.sleep(0.05)
    return {"url": url, "params": params, "items": [1, 2, 3]}


@cached(ttl=1800, key_template="api_response:{endpoint}:{params_hash}")
async def fetch_external_api(endpoint: str, params: dict):
    """Cache external API responses."""
    return await http_get_json(f"https://api.example.com/{endpoint}", params)


async def main() -> None:
    cache = get_cache()
    await cache.delete_pattern("api_response:*")
    await fetch_external_api("users", {"page": 1, "size": 50})
    await fetch_external_api("users", {"size": 50, "page": 1})
    await fetch_external_api("users", {"page": 2, "size": 50})
    assert len(REQUESTS) == 2, REQUESTS
    print(f"3 calls, {len(REQUESTS)} HTTP requests; cached: {await cache.keys('api_response:*')}")
    await cache.close()


if __name__ == "__main__":
    asyncio.run(main())
