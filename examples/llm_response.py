"""Seed: "LLM Response Caching" — responses keyed by model and a hash of the prompt.

``{prompt_hash}`` is a stable hash of the ``prompt`` argument. For chat calls,
``llm_key`` covers the model, every message and every generation parameter.
"""

import asyncio

from agentcache import cached, get_cache, llm_key

GENERATIONS = []


class FakeLLM:
    """Stands in for ``services.get_llm(model)``: answers deterministically and counts calls."""

    def __init__(self, model: str):
        self.model = model

    async def generate(self, prompt: str, **kwargs) -> str:
        GENERATIONS.append(prompt)
        await asyncio.sleep(0.05)
        return f"[{self.model}] an answer to: {prompt}"


@cached(ttl=3600, key_template="llm:{model}:{prompt_hash}")
async def generate_llm_response(model: str, prompt: str, **kwargs):
    """Cache LLM responses based on prompt hash."""
    return await FakeLLM(model).generate(prompt, **kwargs)


async def chat(model: str, messages: list[dict], **params) -> str:
    """Manual caching of a chat completion with ``llm_key``."""
    cache = get_cache()
    key = llm_key(model, messages, **params)
    answer = await cache.get(key)
    if answer is None:
        answer = await FakeLLM(model).generate(messages[-1]["content"], **params)
        await cache.set(key, answer, ttl=3600)
    return answer


async def main() -> None:
    cache = get_cache()
    await cache.delete_pattern("llm:*")
    a = await generate_llm_response("gpt-4o", "What is a cache?")
    b = await generate_llm_response("gpt-4o", "What is a cache?")
    assert a == b and len(GENERATIONS) == 1
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    await chat("gpt-4o", messages, temperature=0.2)
    await chat("gpt-4o", messages, temperature=0.2)
    await chat("gpt-4o", messages, temperature=0.9)  # another parameter is another key
    assert len(GENERATIONS) == 3, GENERATIONS
    print(f"{len(await cache.keys('llm:*'))} LLM responses cached, {len(GENERATIONS)} generations for 5 calls")
    await cache.close()


if __name__ == "__main__":
    asyncio.run(main())
