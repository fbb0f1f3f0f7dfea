"""OpenAI's format as its official SDK defines it: what PolyGenix sends every OpenAI-format
provider (tools, tool choices, a tool-using conversation, images, structured output) validated
against the SDK's own request types, and the tool calls merge() accumulates from a stream equal
to what the SDK's stream accumulation makes of the same chunks."""

import json

import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
    ChatCompletionToolChoiceOptionParam,
)
from openai.types.chat.completion_create_params import ResponseFormat as SDKResponseFormat
from pydantic import TypeAdapter

from polygenix.providers import NamedTool, ResponseFormat, Tooling
from polygenix.providers.client import merge
from tests.fake_provider import ANSWER_WRITERS, STREAM_WRITERS, FakeCall
from tests.provider_calls import (
    CONVERSATION,
    INLINE,
    LINKED,
    PARIS,
    QUESTION,
    SCHEMA,
    TIME,
    WEATHER,
    complete,
    provider_registry,  # noqa: F401  (the providers fixture)
    with_images,
)
from tests.provider_setup import DEFAULT_MODELS, OPENAI_FAMILY

MESSAGES = TypeAdapter(list[ChatCompletionMessageParam])
TOOLS = TypeAdapter(list[ChatCompletionFunctionToolParam])
CHOICE = TypeAdapter(ChatCompletionToolChoiceOptionParam)
FORMAT = TypeAdapter(SDKResponseFormat)


@pytest.fixture(autouse=True)
def clean(fake):
    fake.reset()


CASES = [
    (QUESTION, Tooling((WEATHER, TIME), "required", parallel_tool_calls=False)),
    (QUESTION, Tooling((WEATHER, TIME), NamedTool("get_time"))),
    (CONVERSATION, Tooling((WEATHER, TIME), "auto")),
    (with_images(INLINE, LINKED, detail="high"), Tooling()),
    (QUESTION, Tooling(response_format=ResponseFormat("json_schema", "A", SCHEMA, True, "d"))),
    (QUESTION, Tooling(response_format=ResponseFormat("json_object"))),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("name", sorted(OPENAI_FAMILY - {"deepseek"}))
def test_requests_are_what_the_sdk_types_allow(providers, fake, name, case):
    messages, tooling = CASES[case]
    complete(providers, name, messages, tooling)
    body = fake.requests[-1].body
    MESSAGES.validate_python(body["messages"])
    if "tools" in body:
        TOOLS.validate_python(body["tools"])
    if "tool_choice" in body:
        CHOICE.validate_python(body["tool_choice"])
    if "response_format" in body:
        FORMAT.validate_python(body["response_format"])


def test_a_malformed_message_would_be_caught():
    with pytest.raises(ValueError):
        MESSAGES.validate_python([{"role": "tool", "content": "no call id"}])


@pytest.mark.parametrize("fragments", [1, 4, 17])
def test_merge_accumulates_calls_as_the_sdk_does(providers, fake, fragments):
    calls = [FakeCall("get_weather", PARIS), FakeCall("get_time", "{}")]
    chunks = STREAM_WRITERS["openai"]("gpt-4.1-mini", "", calls, fragments)
    state = ChatCompletionStreamState()
    for record in chunks:
        data = record.decode().removeprefix("data: ").strip()
        if data != "[DONE]":
            state.handle_chunk(ChatCompletionChunk.model_validate(json.loads(data)))
    sdk = state.get_final_completion().choices[0]
    fake.reply(chunks=chunks)
    merged: dict = {}
    tooling = Tooling((WEATHER, TIME))
    for event in providers["openai"].stream(QUESTION, DEFAULT_MODELS["openai"], tooling=tooling):
        merge(event, merged)
    assert merged["tool_calls"] == [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
        for c in sdk.message.tool_calls
    ]
    assert merged["finish_reason"] == sdk.finish_reason == "tool_calls"


def test_the_fakes_whole_answers_are_what_the_sdk_reads(providers, fake):
    fake.calls = [FakeCall("get_weather", PARIS), FakeCall("get_time", "{}")]
    answer = ChatCompletion.model_validate(ANSWER_WRITERS["openai"]("m", "", fake.calls, 1))
    reply = complete(providers, "openai")
    assert [(c["id"], c["name"], c["arguments"]) for c in reply.tool_calls] == [
        (c.id, c.function.name, c.function.arguments) for c in answer.choices[0].message.tool_calls
    ]
    assert answer.choices[0].finish_reason == reply.finish_reason == "tool_calls"
