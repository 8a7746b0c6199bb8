"""A LangChain agent whose model calls are cached in the sidecar (``pip install agentcache[langchain]``).

``set_llm_cache(AgentCacheLLMCache(...))`` sends every chat-model call of the
process through the sidecar: the same conversation with the same model
settings is answered from the cache, tool calls included, by any pod sharing
the backend. The model is langchain-core's fake chat model (no network).

LangChain marks a reply served from the cache (``usage_metadata.total_cost =
0``), and that reply is part of the next step's prompt: so a second run of the
agent reuses its first step and computes the next one once more (for the
conversation that now holds a cached reply); from the third run on, every step
is a hit.
"""

from langchain_core.globals import set_llm_cache
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from agentcache import Cache
from agentcache.integrations.langchain import AgentCacheLLMCache

WEATHER_CALLS = []


@tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    WEATHER_CALLS.append(city)
    return f"sunny, 21°C in {city}"


TOOLS = {get_weather.name: get_weather}


class WeatherModel(FakeMessagesListChatModel):
    """The fake model: calls the weather tool, then answers from its result; counts its (uncached) calls."""

    calls: int = 0

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.calls += 1
        self.i = 1 if isinstance(messages[-1], ToolMessage) else 0
        return super()._generate(messages, stop, run_manager, **kwargs)


def run_agent(model: WeatherModel, question: str) -> str:
    """Ask the model, run the tools it calls and hand their results back, until it answers."""
    messages = [HumanMessage(question)]
    while True:
        reply = model.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return reply.content
        for call in reply.tool_calls:
            messages.append(ToolMessage(TOOLS[call["name"]].invoke(call["args"]), tool_call_id=call["id"]))


def main() -> None:
    with Cache() as cache:  # $AGENTCACHE_SOCKET
        llm_cache = AgentCacheLLMCache(cache, ttl=3600)
        llm_cache.clear()
        set_llm_cache(llm_cache)
        model = WeatherModel(
            responses=[
                AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Oslo"}, "id": "call-1"}]),
                AIMessage("Take sunglasses: it is sunny in Oslo."),
            ]
        )
        answers = [run_agent(model, "Do I need sunglasses in Oslo today?") for _ in range(4)]
        set_llm_cache(None)
    assert answers == ["Take sunglasses: it is sunny in Oslo."] * 4, answers
    assert WEATHER_CALLS == ["Oslo"] * 4 and model.calls == 3, (WEATHER_CALLS, model.calls)
    print(f"4 agent runs of 2 steps, {len(WEATHER_CALLS)} tool calls, {model.calls} model calls")


if __name__ == "__main__":
    main()
