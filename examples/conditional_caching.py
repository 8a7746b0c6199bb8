"""Seeds: "Automatic Response Caching" and "Conditional Caching".

``condition`` receives the call's arguments; when it answers False the call
bypasses the cache (no read, no write). Without a key_template the key is the
function's module and qualified name plus a hash of its arguments.
"""

import asyncio
from dataclasses import dataclass

from agentcache import cached, get_cache

COMPUTATIONS = []


@dataclass
class Task:
    input: str


def perform_complex_calculation(text: str) -> dict:
    COMPUTATIONS.append(text)
    return {"input": text, "length": len(text), "words": len(text.split())}


async def fresh_computation(task: Task) -> dict:
    return {"fresh": perform_complex_calculation(task.input)}


async def standard_response(task: Task) -> dict:
    return {"standard": perform_complex_calculation(task.input)}


@cached(ttl=600)
async def expensive_computation_handler(task: Task):
    return perform_complex_calculation(task.input)


@cached(ttl=1800, condition=lambda task: "cache" in task.input.lower())
async def conditional_cache_handler(task: Task):
    """Only cache responses when user requests caching."""
    if "no-cache" in task.input.lower():
        return await fresh_computation(task)
    return await standard_response(task)


async def main() -> None:
    cache = get_cache()
    await cache.delete(expensive_computation_handler.cache_key(Task("sum the numbers")))
    await cache.delete(conditional_cache_handler.cache_key(Task("please cache this")))
    await expensive_computation_handler(Task("sum the numbers"))
    await expensive_computation_handler(Task("sum the numbers"))
    assert len(COMPUTATIONS) == 1
    await conditional_cache_handler(Task("please cache this"))
    await conditional_cache_handler(Task("please cache this"))
    assert len(COMPUTATIONS) == 2, "cached: the input asks for it"
    await conditional_cache_handler(Task("just answer"))
    await conditional_cache_handler(Task("just answer"))
    assert len(COMPUTATIONS) == 4, "not cached: the condition is false"
    print(f"6 calls, {len(COMPUTATIONS)} computations; key: {expensive_computation_handler.cache_key(Task('x'))}")
    await cache.close()


if __name__ == "__main__":
    asyncio.run(main())
