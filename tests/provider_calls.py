"""What the provider-level tests share: the providers built as the app builds them, pointed at
the fake provider server, and the tools, conversations and images they send."""

import base64

import pytest

from polygenix.providers import Tool, Tooling, build_registry
from polygenix.providers.client import merge
from polygenix.providers.messages import ChatMessage
from tests.fake_provider import SIGNATURE
from tests.provider_setup import BASE_PATHS, DEFAULT_MODELS, key_of

WEATHER = Tool(
    "get_weather",
    "The weather in a city",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city"],
    },
)
TIME = Tool("get_time")  # no description, no parameters
TOOLS = Tooling(tools=(WEATHER, TIME))
QUESTION: list[ChatMessage] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris, and the time?"},
]
PARIS = '{"city": "Paris", "unit": "celsius"}'
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 24).decode()
GIF = base64.b64encode(b"GIF89a" + b"\x00" * 10).decode()


@pytest.fixture(scope="module", name="providers")
def provider_registry(fake):
    """Every provider as build_registry makes it for the app, pointed at the fake server."""
    configured = {
        name: {
            "api_key": key_of(name),
            "base_url": fake.url + path,
            "default_model": DEFAULT_MODELS[name],
        }
        for name, path in BASE_PATHS.items()
    }
    return build_registry(configured, {}, {"max_retry_wait": 0.05, "timeout": 5.0})


def complete(providers, name, messages=QUESTION, tooling=TOOLS):
    return providers[name].complete(messages, DEFAULT_MODELS[name], tooling=tooling)


def read(reply) -> tuple[list, dict]:
    """A stream's events, and what merge() made of them."""
    events, merged = [], {}
    for event in reply:
        events.append(event)
        merge(event, merged)
    return events, merged


def deltas(events) -> list:
    return [d for e in events for d in e.tool_calls]


CONVERSATION: list[ChatMessage] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris, and the time?"},
    {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [
            {
                "id": "call_w1",
                "name": "get_weather",
                "arguments": PARIS,
                "provider_data": {"thoughtSignature": SIGNATURE},
            },
            {"id": "call_t1", "name": "get_time", "arguments": ""},
        ],
    },
    {"role": "tool", "tool_call_id": "call_w1", "content": "18°C, clear"},
    {"role": "tool", "tool_call_id": "call_t1", "content": [{"type": "text", "text": "10:00"}]},
]


SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 40}},
    "required": ["answer"],
}


def with_images(*sources, detail=None) -> list[ChatMessage]:
    parts: list = [{"type": "text", "text": "What is this?"}]
    for source in sources:
        part = {"type": "image", "source": source}
        if detail:
            part["detail"] = detail
        parts.append(part)
    return [QUESTION[0], {"role": "user", "content": parts}]


INLINE = {"type": "base64", "media_type": "image/png", "data": PNG.encode()}
LINKED = {"type": "url", "url": "https://example.com/cat.jpg"}
