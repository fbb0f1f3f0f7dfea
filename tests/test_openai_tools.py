"""Tools and structured outputs on /v1/chat/completions, through the official `openai` SDK
pointed at a real HTTP server of the app, every provider behind it a fake server speaking its own
tool format: tool round trips whole and streamed, the SDK's stream accumulation,
`chat.completions.parse` with a pydantic model, and the conversation kept in one session."""

import json

import openai
import pytest
from pydantic import BaseModel

from tests.fake_provider import SIGNATURE, FakeCall
from tests.helpers import serving
from tests.provider_setup import DEFAULT_MODELS

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}
QUESTION = {"role": "user", "content": "Weather in Paris, and the time?"}
PARIS = '{"city": "Paris"}'
# Every kind of provider wire: OpenAI's (and Mistral's own ids), Anthropic, Gemini, Ollama.
PROVIDERS = ["openai", "mistral", "deepseek", "anthropic", "gemini", "ollama"]


@pytest.fixture
def server(provider_app):
    with serving(provider_app) as base:
        yield base


@pytest.fixture
def key(client, ada):
    return client.post("/api/keys", headers=ada, json={"name": "sdk"}).json["key"]


@pytest.fixture
def sdk(server, key):
    return openai.OpenAI(base_url=server + "/v1", api_key=key, max_retries=0)


def history(client, ada, **query):
    response = client.get("/api/ai_chat/history", headers=ada, query_string=query)
    assert response.status_code == 200, response.json
    return response.json


def tool_loop(sdk, fake, name, stream=False):
    """A question, the model's two calls, their results, the model's answer: the two requests
    of a tool loop as an application makes them."""
    fake.calls = [FakeCall("get_weather", PARIS), FakeCall("get_time", "")]
    messages = [QUESTION]
    first = ask(sdk, name, messages, stream, tools=[WEATHER, TIME])
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    calls = message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert calls[0].function.arguments == PARIS
    assert calls[1].function.arguments in ("", "{}")
    assert len({c.id for c in calls}) == 2
    fake.calls = None
    messages += [
        message.model_dump(exclude_none=True, exclude={"refusal", "annotations", "audio"}),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny, 21°C"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "10:00"},
    ]
    second = ask(sdk, name, messages, stream, tools=[WEATHER, TIME])
    return first, second, messages


def ask(sdk, name, messages, stream, **extra):
    model = f"{name}/{DEFAULT_MODELS[name]}"
    if not stream:
        return sdk.chat.completions.with_raw_response.create(
            model=model, messages=messages, **extra
        ).parse()
    with sdk.chat.completions.stream(model=model, messages=messages, **extra) as events:
        for _ in events:
            pass
        return events.get_final_completion()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("name", PROVIDERS)
def test_a_tool_round_trip(sdk, client, ada, fake, name, stream):
    first, second, messages = tool_loop(sdk, fake, name, stream)
    assert first.choices[0].message.content in (None, "")
    answer = second.choices[0]
    assert answer.finish_reason == "stop"
    assert answer.message.content == "Tool said: Sunny, 21°C | 10:00"
    assert answer.message.tool_calls in (None, [])
    # One session: the second request continued the first (its digest covers the calls).
    sessions = history(client, ada)
    assert len(sessions) == 1
    assert [m["content"] for m in sessions[0]["messages"]] == [
        QUESTION["content"],
        "Tool said: Sunny, 21°C | 10:00",
    ]
    whole = history(client, ada, include_tools="true")[0]["messages"]
    assert [(m["is_bot"], m.get("tool_call_id")) for m in whole] == [
        (False, None),
        (True, None),
        (False, first.choices[0].message.tool_calls[0].id),
        (False, first.choices[0].message.tool_calls[1].id),
        (True, None),
    ]
    calls = whole[1]["tool_calls"]
    assert [(c["id"], c["type"], c["function"]["name"]) for c in calls] == [
        (c.id, "function", c.function.name) for c in first.choices[0].message.tool_calls
    ]
    assert calls[0]["function"]["arguments"] == PARIS


def test_the_reply_is_shaped_as_openai_sends_it(server, key, fake):
    import requests

    fake.calls = [FakeCall("get_weather", PARIS, id="call_abc")]
    response = requests.post(
        server + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "openai", "messages": [QUESTION], "tools": [WEATHER]},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": PARIS},
                }
            ],
        },
        "finish_reason": "tool_calls",
    }


def test_streamed_chunks_are_shaped_as_openai_sends_them(sdk, fake):
    fake.calls = [FakeCall("get_weather", PARIS, id="call_abc"), FakeCall("get_time", "{}")]
    fake.fragments = 6
    chunks = list(
        sdk.chat.completions.create(
            model="openai",
            messages=[QUESTION],
            tools=[WEATHER, TIME],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    first = deltas[0]
    assert first.role == "assistant" and first.content is None
    begun = [d.tool_calls[0] for d in deltas if d.tool_calls and d.tool_calls[0].id]
    assert [(c.index, c.id, c.type, c.function.name) for c in begun] == [
        (0, "call_abc", "function", "get_weather"),
        (1, "call_1", "function", "get_time"),
    ]
    later = [d.tool_calls[0] for d in deltas if d.tool_calls and not d.tool_calls[0].id]
    assert all(c.type is None and c.function.name is None for c in later)
    weather = "".join(
        c.function.arguments or ""
        for d in deltas
        if d.tool_calls
        for c in d.tool_calls
        if c.index == 0
    )
    assert weather == PARIS
    assert len([c for c in later if c.index == 0]) >= 5  # many fragments, each passed on
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and not chunks[-1].choices


def test_gemini_thought_signature_goes_back_with_its_call(sdk, fake):
    first, _, _ = tool_loop(sdk, fake, "gemini")
    sent = fake.requests[-1].body["contents"]
    calls = [p for c in sent for p in c["parts"] if "functionCall" in p]
    assert calls[0]["thoughtSignature"] == SIGNATURE
    assert first.choices[0].message.tool_calls[0].id


class Answer(BaseModel):
    answer: str


@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini", "ollama", "echo"])
def test_parse_with_a_pydantic_model(sdk, name, fake):
    model = name if name == "echo" else f"{name}/{DEFAULT_MODELS[name]}"
    completion = sdk.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "Say hello"}],
        response_format=Answer,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Answer)
    if name != "echo":
        assert parsed.answer == f"Hello from {DEFAULT_MODELS[name]}"


def test_json_schema_reaches_the_openai_provider_as_given(sdk, fake):
    sdk.chat.completions.parse(
        model="openai", messages=[{"role": "user", "content": "Say hello"}], response_format=Answer
    )
    fmt = fake.requests[-1].body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Answer"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"] == {
        "answer": {"title": "Answer", "type": "string"}
    }


def test_a_streamed_tool_loop_on_echo_accumulates(sdk, client, ada):
    with sdk.chat.completions.stream(
        model="echo",
        messages=[QUESTION],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    ) as events:
        kinds = {e.type for e in events}
        final = events.get_final_completion()
    assert "tool_calls.function.arguments.done" in kinds
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": ""}
    assert final.choices[0].finish_reason == "tool_calls"
