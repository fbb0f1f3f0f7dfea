"""Tools, structured output and images at the provider level: each provider built as the app
builds it (build_registry), called directly against the fake provider server, which speaks each
provider's own shapes. Every request is asserted field by field, every reply and stream."""

import json

import pytest

from polygenix.providers import (
    NamedTool,
    ProviderError,
    ResponseFormat,
    Tool,
    Tooling,
    UnsupportedInput,
)
from polygenix.providers.client import merge
from tests.fake_provider import SIGNATURE, STREAM_WRITERS, FakeCall, chunk, sent, sse
from tests.provider_calls import (
    CONVERSATION,
    GIF,
    INLINE,
    LINKED,
    PARIS,
    PNG,
    QUESTION,
    SCHEMA,
    TIME,
    TOOLS,
    WEATHER,
    complete,
    deltas,
    provider_registry,  # noqa: F401  (the providers fixture)
    read,
    with_images,
)
from tests.provider_setup import DEFAULT_MODELS, OPENAI_FAMILY


@pytest.fixture(autouse=True)
def clean(fake):
    fake.reset()
    yield
    fake.reset()


# --- the request: tools, tool_choice, parallel_tool_calls --------------------------------

OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": WEATHER.parameters,
        },
    },
    {"type": "function", "function": {"name": "get_time"}},
]


@pytest.mark.parametrize(
    ("choice", "parallel", "fields"),
    [
        (None, None, {}),
        ("auto", None, {"tool_choice": "auto"}),
        ("none", None, {"tool_choice": "none"}),
        ("required", False, {"tool_choice": "required", "parallel_tool_calls": False}),
        (
            NamedTool("get_time"),
            True,
            {
                "tool_choice": {"type": "function", "function": {"name": "get_time"}},
                "parallel_tool_calls": True,
            },
        ),
    ],
)
@pytest.mark.parametrize("name", sorted(OPENAI_FAMILY))
def test_openai_family_sends_tools_as_openai_defines_them(
    providers, fake, name, choice, parallel, fields
):
    tooling = Tooling(tools=(WEATHER, TIME), tool_choice=choice, parallel_tool_calls=parallel)
    complete(providers, name, tooling=tooling)
    body = sent(fake)
    if name == "deepseek":  # DeepSeek documents no parallel_tool_calls
        fields = {k: v for k, v in fields.items() if k != "parallel_tool_calls"}
    assert body["tools"] == OPENAI_TOOLS
    assert {k: body[k] for k in ("tool_choice", "parallel_tool_calls") if k in body} == fields
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris, and the time?"},
    ]


def test_strict_tools_and_no_tools(providers, fake):
    strict = Tool("lookup", None, {"type": "object", "properties": {}}, strict=True)
    complete(providers, "openai", tooling=Tooling(tools=(strict,), tool_choice="auto"))
    assert sent(fake)["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {"type": "object", "properties": {}},
                "strict": True,
            },
        }
    ]
    # No tools: neither tool_choice nor parallel_tool_calls goes out (OpenAI refuses them alone).
    complete(providers, "openai", tooling=Tooling(tool_choice="none", parallel_tool_calls=False))
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(sent(fake))


ANTHROPIC_TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": WEATHER.parameters,
    },
    {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (NamedTool("get_time"), None, {"type": "tool", "name": "get_time"}),
        ("none", False, {"type": "none"}),
    ],
)
def test_anthropic_tools_and_tool_choice(providers, fake, choice, parallel, expected):
    tooling = Tooling(tools=(WEATHER, TIME), tool_choice=choice, parallel_tool_calls=parallel)
    complete(providers, "anthropic", tooling=tooling)
    body = sent(fake)
    assert body["tools"] == ANTHROPIC_TOOLS
    assert body.get("tool_choice") == expected
    assert body["system"] == "Be brief."


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        (None, None),
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        (NamedTool("get_time"), {"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
    ],
)
def test_gemini_function_declarations_and_calling_config(providers, fake, choice, config):
    # parallel_tool_calls has no Gemini counterpart: never sent.
    complete(
        providers, "gemini", tooling=Tooling((WEATHER, TIME), choice, parallel_tool_calls=False)
    )
    body = sent(fake)
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city",
                    "parametersJsonSchema": WEATHER.parameters,
                },
                {"name": "get_time"},
            ]
        }
    ]
    assert body.get("toolConfig") == (config and {"functionCallingConfig": config})


OLLAMA_TOOLS = {
    "get_weather": {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": WEATHER.parameters,
        },
    },
    "get_time": {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    },
}


@pytest.mark.parametrize(
    ("choice", "names"),
    [
        (None, ["get_weather", "get_time"]),
        ("auto", ["get_weather", "get_time"]),
        ("required", ["get_weather", "get_time"]),  # Ollama cannot force a call
        (NamedTool("get_time"), ["get_time"]),
        ("none", []),
    ],
)
def test_ollama_tools_and_what_stands_for_tool_choice(providers, fake, choice, names):
    complete(providers, "ollama", tooling=Tooling((WEATHER, TIME), choice))
    body = sent(fake)
    assert body.get("tools", []) == [OLLAMA_TOOLS[n] for n in names]
    assert "tool_choice" not in body


# --- a tool-using conversation, sent back in each provider's shapes -----------------------


@pytest.mark.parametrize("name", sorted(OPENAI_FAMILY - {"mistral"}))
def test_openai_family_conversation(providers, fake, name):
    reply = complete(providers, name, CONVERSATION)
    assert sent(fake)["messages"][2:] == [
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "call_w1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": PARIS},
                },
                {
                    "id": "call_t1",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                },
            ],
        },
        {"role": "tool", "content": "18°C, clear", "tool_call_id": "call_w1"},
        {"role": "tool", "content": "10:00", "tool_call_id": "call_t1"},
    ]
    assert reply.content == "Tool said: 18°C, clear | 10:00"
    assert (reply.tool_calls, reply.finish_reason) == ((), "stop")


def test_an_assistant_message_that_only_calls_sends_content_null(providers, fake):
    only_calls = [
        *QUESTION,
        {"role": "assistant", "content": "", "tool_calls": CONVERSATION[2]["tool_calls"][1:]},
        CONVERSATION[4],
    ]
    complete(providers, "openai", only_calls)
    assert sent(fake)["messages"][2]["content"] is None


def test_mistral_call_ids_are_mapped_in_the_request_only(providers, fake):
    kept = "D681PevKs"  # an id Mistral gave: kept as it is
    messages = [
        *CONVERSATION[:2],
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_w1", "name": "get_weather", "arguments": PARIS},
                {"id": kept, "name": "get_time", "arguments": "{}"},
            ],
        },
        {"role": "tool", "tool_call_id": "call_w1", "content": "18°C"},
        {"role": "tool", "tool_call_id": kept, "content": "10:00"},
    ]
    complete(providers, "mistral", messages)
    first = sent(fake)["messages"]
    mapped = first[2]["tool_calls"][0]["id"]
    assert len(mapped) == 9 and mapped.isalnum() and mapped != kept
    assert first[3]["tool_call_id"] == mapped  # the result answers the same call
    assert first[2]["tool_calls"][1]["id"] == kept and first[4]["tool_call_id"] == kept
    complete(providers, "mistral", messages)
    assert sent(fake)["messages"] == first  # the same mapping every time
    # A call Mistral makes keeps its own id in the reply.
    fake.calls = [FakeCall("get_time", "{}", id="Xy12Ab34C")]
    reply = complete(providers, "mistral", QUESTION)
    assert [c["id"] for c in reply.tool_calls] == ["Xy12Ab34C"]


def test_anthropic_conversation(providers, fake):
    reply = complete(providers, "anthropic", CONVERSATION)
    body = sent(fake)
    assert body["system"] == "Be brief."
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris, and the time?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "call_w1",
                    "name": "get_weather",
                    "input": {"city": "Paris", "unit": "celsius"},
                },
                {"type": "tool_use", "id": "call_t1", "name": "get_time", "input": {}},
            ],
        },
        {  # consecutive results: one user turn
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_w1", "content": "18°C, clear"},
                {"type": "tool_result", "tool_use_id": "call_t1", "content": "10:00"},
            ],
        },
    ]
    assert reply.content == "Tool said: 18°C, clear | 10:00"


def test_anthropic_maps_call_ids_it_would_refuse(providers, fake):
    messages = [
        *QUESTION,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "functions.get_time:0", "name": "get_time", "arguments": "{}"}],
        },
        {"role": "tool", "tool_call_id": "functions.get_time:0", "content": "10:00"},
    ]
    complete(providers, "anthropic", messages)
    use, result = sent(fake)["messages"][1]["content"][0], sent(fake)["messages"][2]["content"][0]
    assert use["id"].startswith("toolu_") and use["id"] == result["tool_use_id"]


def test_gemini_conversation_keeps_the_thought_signature_and_ids(providers, fake):
    reply = complete(providers, "gemini", CONVERSATION)
    body = sent(fake)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris, and the time?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Let me look."},
                {
                    "functionCall": {
                        "id": "call_w1",
                        "name": "get_weather",
                        "args": {"city": "Paris", "unit": "celsius"},
                    },
                    "thoughtSignature": SIGNATURE,
                },
                {"functionCall": {"id": "call_t1", "name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": "call_w1",
                        "name": "get_weather",
                        "response": {"output": "18°C, clear"},
                    }
                },
                {
                    "functionResponse": {
                        "id": "call_t1",
                        "name": "get_time",
                        "response": {"output": "10:00"},
                    }
                },
            ],
        },
    ]
    assert reply.content == "Tool said: 18°C, clear | 10:00"


def test_ollama_conversation(providers, fake):
    reply = complete(providers, "ollama", CONVERSATION)
    assert sent(fake)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris, and the time?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "function": {
                        "name": "get_weather",
                        "arguments": {"city": "Paris", "unit": "celsius"},
                    }
                },
                {"function": {"name": "get_time", "arguments": {}}},
            ],
        },
        {"role": "tool", "content": "18°C, clear", "tool_name": "get_weather"},
        {"role": "tool", "content": "10:00", "tool_name": "get_time"},
    ]
    assert reply.content == "Tool said: 18°C, clear | 10:00"


@pytest.mark.parametrize("name", ["anthropic", "gemini", "ollama"])
def test_arguments_that_are_no_object_are_refused_before_calling(providers, fake, name):
    broken = [
        *QUESTION,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_1", "name": "get_time", "arguments": '{"cut": '}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "10:00"},
    ]
    with pytest.raises(UnsupportedInput) as refused:
        providers[name].check(broken, DEFAULT_MODELS[name])
    with pytest.raises(UnsupportedInput):
        complete(providers, name, broken)
    assert refused.value.field == "messages" and refused.value.message.startswith(f"{name}: ")
    assert "'call_1'" in refused.value.message and "not a JSON object" in refused.value.message
    assert fake.requests == []
    complete(providers, "openai", broken)  # OpenAI's format carries the text as it is
    assert sent(fake)["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"cut": '


@pytest.mark.parametrize("name", ["gemini", "ollama"])
def test_a_result_that_answers_no_call_is_refused_where_the_name_is_needed(providers, fake, name):
    orphan = [*QUESTION, {"role": "tool", "tool_call_id": "call_nobody", "content": "10:00"}]
    with pytest.raises(UnsupportedInput, match="'call_nobody' answers no tool call"):
        complete(providers, name, orphan)
    assert fake.requests == []


# --- whole replies that call tools ---------------------------------------------------------

PARALLEL = [FakeCall("get_weather", PARIS), FakeCall("get_time", "{}")]


@pytest.mark.parametrize(
    ("name", "ids"),
    [
        ("openai", ["call_0", "call_1"]),
        ("groq", ["call_0", "call_1"]),
        ("deepseek", ["call_0", "call_1"]),
        ("mistral", ["call_0", "call_1"]),
        ("openrouter", ["call_0", "call_1"]),
        ("openai-compatible", ["call_0", "call_1"]),
        ("anthropic", ["toolu_0", "toolu_1"]),
        ("gemini", None),  # Gemini gives none here: PolyGenix does
        ("ollama", None),
    ],
)
def test_a_parallel_call_and_an_empty_one_in_a_whole_reply(providers, fake, name, ids):
    fake.calls = PARALLEL
    reply = complete(providers, name)
    assert reply.content == "" and reply.finish_reason == "tool_calls"
    got = [c["id"] for c in reply.tool_calls]
    assert len(set(got)) == 2 and all(got)
    if ids:
        assert got == ids
    else:
        assert all(i.startswith("call_") and len(i) == 29 for i in got)
    assert [(c["name"], c["arguments"]) for c in reply.tool_calls] == [
        ("get_weather", PARIS),
        ("get_time", "{}"),
    ]
    data = [c.get("provider_data") for c in reply.tool_calls]
    assert data == ([{"thoughtSignature": SIGNATURE}, None] if name == "gemini" else [None, None])
    assert "tools" not in reply.options  # tooling is not a generation option


def test_gemini_ids_are_kept_when_gemini_gives_them(providers, fake):
    fake.calls = [FakeCall("get_time", "{}", id="gem-1"), FakeCall("get_time", "{}", id="gem-1")]
    reply = complete(providers, "gemini")
    ids = [c["id"] for c in reply.tool_calls]
    assert ids[0] == "gem-1" and ids[1] != "gem-1"  # a repeated id is replaced: ids unique


def test_arguments_are_passed_on_exactly_as_the_model_produced_them(providers, fake):
    odd = '{ "city" :"Zürich",\n "unit":"celsius" }'
    fake.calls = [FakeCall("get_weather", odd)]
    assert complete(providers, "openai").tool_calls[0]["arguments"] == odd


@pytest.mark.parametrize(("reason", "finish"), [("stop", "tool_calls"), ("length", "length")])
def test_the_finish_reason_is_tool_calls_whenever_a_call_is_present(
    providers, fake, reason, finish
):
    # Many OpenAI-compatible servers say "stop" beside a call; a reply cut at its output cap
    # keeps "length", for its last call may be cut.
    body = {
        "id": "x",
        "object": "chat.completion",
        "model": "local-model",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": "{}"},
                        }
                    ],
                },
                "finish_reason": reason,
            }
        ],
    }
    fake.reply(body=body)
    assert complete(providers, "openai-compatible").finish_reason == finish


def test_text_beside_a_call_is_the_content(providers, fake):
    fake.reply(
        body={
            "id": "msg_2",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_9", "name": "get_time", "input": {}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 5, "output_tokens": 3},
        }
    )
    reply = complete(providers, "anthropic")
    assert (reply.content, reply.finish_reason) == ("Let me check.", "tool_calls")
    assert reply.tool_calls == ({"id": "toolu_9", "name": "get_time", "arguments": "{}"},)
    assert (reply.prompt_tokens, reply.completion_tokens) == (5, 3)


def test_a_reply_with_neither_text_nor_a_call_is_still_no_usable_reply(providers, fake):
    body = {
        "choices": [
            {"message": {"role": "assistant", "content": None, "tool_calls": []}, "index": 0}
        ]
    }
    fake.reply(body=body)
    with pytest.raises(ProviderError, match="no usable reply"):
        complete(providers, "openai")


# --- streamed calls -------------------------------------------------------------------------

FRAGMENTED = [FakeCall("get_weather", PARIS), FakeCall("get_time", "{}")]


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("openai", 9),
        ("groq", 9),
        ("mistral", 9),
        ("deepseek", 9),
        ("openrouter", 9),
        ("openai-compatible", 9),
        ("anthropic", 9),
        ("gemini", 1),  # Gemini and Ollama stream a call whole
        ("ollama", 1),
    ],
)
def test_a_streamed_parallel_call_in_many_fragments(providers, fake, name, fragments):
    fake.calls, fake.fragments = FRAGMENTED, 9
    events, merged = read(providers[name].stream(QUESTION, DEFAULT_MODELS[name], tooling=TOOLS))
    pieces = deltas(events)
    firsts = [d for d in pieces if d.id is not None]
    assert [(d.index, d.name) for d in firsts] == [(0, "get_weather"), (1, "get_time")]
    assert all(d.arguments == "" for d in firsts)  # a first delta: index, id and name
    later = [d for d in pieces if d.id is None]
    assert all(d.name is None and d.arguments for d in later)  # later: index and a fragment
    assert len([d for d in later if d.index == 0]) == fragments
    assert merged["finish_reason"] == "tool_calls"
    calls = merged["tool_calls"]
    assert [(c["name"], c["arguments"]) for c in calls] == [
        ("get_weather", PARIS),
        ("get_time", "{}"),
    ]
    assert calls[0]["id"] != calls[1]["id"]
    # The same reply whole: the same calls.
    fake.reply()
    whole = complete(providers, name)
    assert [(c["name"], c["arguments"]) for c in whole.tool_calls] == [
        (c["name"], c["arguments"]) for c in calls
    ]
    if name == "gemini":
        assert calls[0]["provider_data"] == {"thoughtSignature": SIGNATURE}


def test_an_anthropic_call_with_no_input_streams_as_empty_arguments(providers, fake):
    fake.calls = [FakeCall("get_time", "{}")]
    events, merged = read(
        providers["anthropic"].stream(QUESTION, "claude-haiku-4-5", tooling=TOOLS)
    )
    assert merged["tool_calls"] == [{"id": "toolu_0", "name": "get_time", "arguments": "{}"}]


def test_mistral_streams_every_call_whole_at_index_0(providers, fake):
    calls = [
        {"index": 0, "id": "AbCdEfGh1", "function": {"name": "get_weather", "arguments": PARIS}},
        {"index": 0, "id": "AbCdEfGh2", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    fake.reply(
        chunks=[
            chunk({"role": "assistant", "content": ""}),
            chunk({"tool_calls": [calls[0]]}),
            chunk({"tool_calls": [calls[1]]}),
            chunk(finish="tool_calls"),
            sse("[DONE]"),
        ]
    )
    _, merged = read(providers["mistral"].stream(QUESTION, "mistral-small-latest", tooling=TOOLS))
    assert merged["tool_calls"] == [
        {"id": "AbCdEfGh1", "name": "get_weather", "arguments": PARIS},
        {"id": "AbCdEfGh2", "name": "get_time", "arguments": "{}"},
    ]


def test_a_streamed_call_the_provider_says_stop_to_is_tool_calls(providers, fake):
    first = {"index": 0, "id": "c1", "type": "function", "function": {"name": "get_time"}}
    fake.reply(
        chunks=[
            chunk({"role": "assistant", "content": None, "tool_calls": [first]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
            chunk(finish="stop"),
            sse("[DONE]"),
        ]
    )
    _, merged = read(providers["openai-compatible"].stream(QUESTION, "m", tooling=TOOLS))
    assert merged["finish_reason"] == "tool_calls"
    assert merged["tool_calls"] == [{"id": "c1", "name": "get_time", "arguments": "{}"}]


@pytest.mark.parametrize(
    ("name", "keep"),
    [("openai", 5), ("anthropic", 5), ("gemini", 1), ("ollama", 1)],
)
def test_a_stream_cut_inside_a_tool_call_is_an_error_and_never_whole(providers, fake, name, keep):
    """The stream ends (no end marker) after the first call began: the caller is told, and
    what merge() holds has no finish reason, its arguments cut."""
    fake.reply(chunks=_cut(name, keep))
    merged: dict = {}
    with pytest.raises(ProviderError, match="ended the stream before the reply was complete"):
        for event in providers[name].stream(QUESTION, DEFAULT_MODELS[name], tooling=TOOLS):
            merge(event, merged)
    assert merged.get("finish_reason") is None
    assert merged["tool_calls"][0]["name"] == "get_weather"
    if name in ("openai", "anthropic"):
        assert merged["tool_calls"][0]["arguments"] != PARIS
        assert PARIS.startswith(merged["tool_calls"][0]["arguments"])


def _cut(name, keep) -> list[bytes]:
    """The tool-calling stream of `name`, cut `keep` records after its first call began."""
    chunks = STREAM_WRITERS[name](DEFAULT_MODELS[name], "", FRAGMENTED, 9)
    first = next(n for n, c in enumerate(chunks) if b"get_weather" in c)
    return chunks[: first + keep]


@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini", "ollama"])
def test_the_providers_own_error_for_a_bad_schema(providers, fake, name):
    bad = Tooling(tools=(Tool("broken", None, {"type": "banana"}),))
    with pytest.raises(ProviderError) as failed:
        complete(providers, name, tooling=bad)
    assert failed.value.status == 502 and "rejected the request (HTTP 400)" in failed.value.message
    words = {
        "openai": "Invalid schema for function 'broken'",
        "anthropic": "input_schema: JSON schema is invalid",
        "gemini": "Unknown type",
        "ollama": "invalid tool schema for broken",
    }[name]
    assert words in failed.value.message
    assert len(fake.requests) == 1  # a 400 is not retried


# --- structured output ------------------------------------------------------------------------

JSON_SCHEMA = ResponseFormat("json_schema", name="Answer", schema=SCHEMA, strict=True)


@pytest.mark.parametrize("name", sorted(OPENAI_FAMILY - {"deepseek"}))
def test_openai_family_takes_response_format_as_given(providers, fake, name):
    reply = complete(providers, name, tooling=Tooling(response_format=JSON_SCHEMA))
    assert sent(fake)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Answer", "schema": SCHEMA, "strict": True},
    }
    assert json.loads(reply.content) == {"answer": f"Hello from {DEFAULT_MODELS[name]}"}
    complete(providers, name, tooling=Tooling(response_format=ResponseFormat("json_object")))
    assert sent(fake)["response_format"] == {"type": "json_object"}
    complete(providers, name, tooling=Tooling(response_format=ResponseFormat("text")))
    assert "response_format" not in sent(fake)  # text is every provider's default


def test_deepseek_gets_json_mode_and_the_schema_in_its_instructions(providers, fake):
    reply = complete(providers, "deepseek", tooling=Tooling(response_format=JSON_SCHEMA))
    body = sent(fake)
    assert body["response_format"] == {"type": "json_object"}
    system = body["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Be brief.\n\n")
    assert "JSON" in system["content"] and json.dumps(SCHEMA) in system["content"]
    assert body["messages"][1:] == QUESTION[1:]
    assert json.loads(reply.content)["answer"]
    complete(providers, "deepseek", QUESTION[1:], Tooling(response_format=JSON_SCHEMA))
    assert sent(fake)["messages"][0]["role"] == "system"  # one is added when there was none


def test_anthropic_structured_output_is_output_config_with_its_schema_rules(providers, fake):
    nested = {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "maxLength": 40, "description": "Short"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "where": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        "required": ["answer"],
        "additionalProperties": True,
    }
    fmt = ResponseFormat("json_schema", name="Answer", schema=nested)
    reply = complete(providers, "anthropic", tooling=Tooling(response_format=fmt))
    body = sent(fake)
    assert body["output_config"] == {
        "format": {
            "type": "json_schema",
            "schema": {
                "type": "object",
                "properties": {
                    "answer": {"type": "string", "description": "Short\n\n{maxLength: 40}"},
                    "tags": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "{minItems: 2}",
                    },
                    "where": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "additionalProperties": False,
                    },
                },
                "required": ["answer"],
                "additionalProperties": False,
            },
        }
    }
    assert body["system"] == "Be brief."
    assert json.loads(reply.content) == {"answer": "Hello from claude-haiku-4-5"}
    json_object = Tooling(response_format=ResponseFormat("json_object"))
    complete(providers, "anthropic", tooling=json_object)
    assert "output_config" not in sent(fake)
    assert sent(fake)["system"].startswith("Be brief.\n\nAnswer with a single JSON object")


def test_anthropic_strict_tools_follow_the_same_rules(providers, fake):
    strict = Tool("lookup", None, {"type": "object", "properties": {"q": {"type": "string"}}}, True)
    complete(providers, "anthropic", tooling=Tooling(tools=(strict,)))
    assert sent(fake)["tools"] == [
        {
            "name": "lookup",
            "input_schema": {
                "type": "object",
                "properties": {"q": {"type": "string"}},
                "additionalProperties": False,
            },
            "strict": True,
        }
    ]


def test_gemini_structured_output(providers, fake):
    reply = complete(providers, "gemini", tooling=Tooling(response_format=JSON_SCHEMA))
    config = sent(fake)["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == SCHEMA
    assert json.loads(reply.content) == {"answer": "Hello from gemini-2.5-flash"}
    complete(providers, "gemini", tooling=Tooling(response_format=ResponseFormat("json_object")))
    config = sent(fake)["generationConfig"]
    assert config["responseMimeType"] == "application/json" and "responseJsonSchema" not in config


def test_ollama_structured_output_is_format(providers, fake):
    reply = complete(providers, "ollama", tooling=Tooling(response_format=JSON_SCHEMA))
    assert sent(fake)["format"] == SCHEMA
    assert json.loads(reply.content) == {"answer": "Hello from llama3.2"}
    complete(providers, "ollama", tooling=Tooling(response_format=ResponseFormat("json_object")))
    assert sent(fake)["format"] == "json"


# --- images -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPENAI_FAMILY - {"deepseek"}))
def test_openai_family_images_are_image_url_parts(providers, fake, name):
    reply = complete(providers, name, with_images(INLINE, LINKED, detail="low"), Tooling())
    assert sent(fake)["messages"][1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {
                "type": "image_url",
                "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
            },
            {"type": "image_url", "image_url": {"url": LINKED["url"], "detail": "low"}},
        ],
    }
    assert reply.content.endswith("I see 2 image(s)")


def test_anthropic_images_are_base64_and_url_sources(providers, fake):
    complete(providers, "anthropic", with_images(INLINE, LINKED, detail="high"), Tooling())
    assert sent(fake)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
                {"type": "image", "source": {"type": "url", "url": LINKED["url"]}},
            ],
        }
    ]


def test_gemini_images_are_inline_data(providers, fake):
    complete(providers, "gemini", with_images(INLINE), Tooling())
    assert sent(fake)["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "What is this?"},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
            ],
        }
    ]


def test_ollama_images_are_the_messages_images(providers, fake):
    complete(providers, "ollama", with_images(INLINE, INLINE), Tooling())
    assert sent(fake)["messages"][1] == {
        "role": "user",
        "content": "What is this?",
        "images": [PNG, PNG],
    }


@pytest.mark.parametrize(
    ("name", "source", "says"),
    [
        ("deepseek", INLINE, "deepseek: this provider takes no image input"),
        ("gemini", LINKED, "gemini: images cannot be given by URL"),
        ("ollama", LINKED, "ollama: images cannot be given by URL"),
        (
            "gemini",
            {"type": "base64", "media_type": "image/gif", "data": GIF.encode()},
            "gemini: image/gif images are not accepted",
        ),
    ],
)
def test_images_a_provider_cannot_take_are_refused_before_any_call(
    providers, fake, name, source, says
):
    with pytest.raises(UnsupportedInput) as refused:
        providers[name].check(with_images(source), DEFAULT_MODELS[name])
    assert refused.value.field == "messages" and refused.value.message.startswith(says)
    with pytest.raises(UnsupportedInput, match=says):
        complete(providers, name, with_images(source), Tooling())
    with pytest.raises(UnsupportedInput, match=says):
        providers[name].stream(with_images(source), DEFAULT_MODELS[name])
    assert fake.requests == []


def test_anthropic_and_openai_take_gifs(providers, fake):
    gif = {"type": "base64", "media_type": "image/gif", "data": GIF.encode()}
    for name in ("anthropic", "openai"):
        providers[name].check(with_images(gif), DEFAULT_MODELS[name])
        complete(providers, name, with_images(gif), Tooling())
    assert len(fake.requests) == 2


# --- the echo model -------------------------------------------------------------------------


def test_echo_calls_the_named_tool_with_the_smallest_arguments(providers):
    echo = providers["echo"]
    named = Tooling(tools=(WEATHER, TIME), tool_choice=NamedTool("get_weather"))
    reply = echo.complete(QUESTION, "echo", tooling=named)
    assert reply.content == "" and reply.finish_reason == "tool_calls"
    [call] = reply.tool_calls
    assert (call["name"], call["arguments"]) == ("get_weather", '{"city": ""}')
    assert echo.complete(QUESTION, "echo", tooling=named).tool_calls == reply.tool_calls
    longer = [*QUESTION, {"role": "assistant", "content": "Hm."}, QUESTION[1]]
    assert echo.complete(longer, "echo", tooling=named).tool_calls[0]["id"] != call["id"]


def test_echo_required_calls_every_tool_unless_parallel_calls_are_off(providers):
    echo = providers["echo"]
    both = echo.complete(QUESTION, "echo", tooling=Tooling((WEATHER, TIME), "required"))
    assert [c["name"] for c in both.tool_calls] == ["get_weather", "get_time"]
    assert both.tool_calls[1]["arguments"] == "{}"
    one = Tooling((WEATHER, TIME), "required", parallel_tool_calls=False)
    assert [c["name"] for c in echo.complete(QUESTION, "echo", tooling=one).tool_calls] == [
        "get_weather"
    ]
    for choice in ("auto", "none", None):
        reply = echo.complete(QUESTION, "echo", tooling=Tooling((WEATHER,), choice))
        assert reply.tool_calls == () and reply.content == "Echo: Weather in Paris, and the time?"


def test_echo_answers_tool_results_in_text(providers):
    required = Tooling((WEATHER, TIME), "required")
    reply = providers["echo"].complete(CONVERSATION, "echo", tooling=required)
    assert reply.tool_calls == () and reply.content == "Echo: 18°C, clear\n10:00"


def test_echo_streams_a_call_as_openai_does(providers):
    named = Tooling(tools=(WEATHER,), tool_choice=NamedTool("get_weather"))
    events, merged = read(providers["echo"].stream(QUESTION, "echo", tooling=named))
    pieces = deltas(events)
    assert pieces[0].id and pieces[0].name == "get_weather" and pieces[0].arguments == ""
    assert all(d.id is None and d.index == 0 for d in pieces[1:])
    whole = providers["echo"].complete(QUESTION, "echo", tooling=named)
    assert merged["tool_calls"] == list(whole.tool_calls)
    assert merged["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        (SCHEMA, {"answer": ""}),
        ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}, {}),
        (
            {
                "type": "object",
                "properties": {
                    "n": {"type": "integer", "exclusiveMinimum": 3},
                    "x": {"type": "number", "minimum": -2},
                    "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                    "kind": {"enum": ["b", "a"]},
                    "when": {"type": "string", "format": "date"},
                    "maybe": {"type": ["null", "boolean"]},
                    "ref": {"$ref": "#/$defs/Inner"},
                    "pick": {"anyOf": [{"type": "string", "minLength": 2}, {"type": "null"}]},
                },
                "required": ["n", "x", "tags", "kind", "when", "maybe", "ref", "pick"],
                "$defs": {"Inner": {"type": "object", "properties": {"k": {"const": 7}}}},
            },
            {
                "n": 4,
                "x": 0,
                "tags": ["", ""],
                "kind": "b",
                "when": "1970-01-01",
                "maybe": False,
                "ref": {},
                "pick": "aa",
            },
        ),
        ({"$ref": "#/$defs/Loop", "$defs": {"Loop": {"$ref": "#/$defs/Loop"}}}, None),
    ],
)
def test_echo_json_schema_is_the_smallest_instance(providers, schema, instance):
    fmt = ResponseFormat("json_schema", name="S", schema=schema)
    reply = providers["echo"].complete(QUESTION, "echo", tooling=Tooling(response_format=fmt))
    assert json.loads(reply.content) == instance


def test_echo_json_object_and_images(providers):
    echo = providers["echo"]
    reply = echo.complete(with_images(INLINE, LINKED), "echo")
    assert reply.content == (
        "Echo: What is this? [image: image/png, 32 bytes] [image: https://example.com/cat.jpg]"
    )
    as_json = echo.complete(
        QUESTION, "echo", tooling=Tooling(response_format=ResponseFormat("json_object"))
    )
    assert json.loads(as_json.content) == {"echo": "Echo: Weather in Paris, and the time?"}
    echo.check(with_images(LINKED), "echo")  # the echo takes everything


# --- ids a server leaves out or repeats, and checking input without calling -----------------


def test_missing_and_repeated_call_ids_are_replaced_by_unique_ones(providers, fake):
    def call(call_id):
        item = {"type": "function", "function": {"name": "get_time", "arguments": "{}"}}
        return item | ({"id": call_id} if call_id is not None else {})

    body = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [call("same"), call("same"), call(None), call("")],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    fake.reply(body=body)
    ids = [c["id"] for c in complete(providers, "openai-compatible").tool_calls]
    assert ids[0] == "same" and len(set(ids)) == 4 and all(ids)
    fake.reply(
        chunks=[
            chunk({"role": "assistant", "tool_calls": [{"index": 0, "function": {"name": "a"}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
            chunk({"tool_calls": [{"index": 1, "id": "", "function": {"name": "b"}}]}),
            chunk(finish="tool_calls"),
            sse("[DONE]"),
        ]
    )
    _, merged = read(providers["openai-compatible"].stream(QUESTION, "m", tooling=TOOLS))
    assert [c["name"] for c in merged["tool_calls"]] == ["a", "b"]
    assert all(c["id"].startswith("call_") for c in merged["tool_calls"])
    assert [c["arguments"] for c in merged["tool_calls"]] == ["{}", ""]


@pytest.mark.parametrize("name", sorted(OPENAI_FAMILY | {"anthropic", "gemini", "ollama", "echo"}))
def test_check_takes_a_whole_tool_conversation_and_calls_no_one(providers, fake, name):
    model = DEFAULT_MODELS.get(name, "echo")
    providers[name].check(CONVERSATION, model, TOOLS)
    providers[name].check(QUESTION, model)
    assert fake.requests == []


def test_arguments_nested_past_the_parsers_depth_are_refused_not_a_crash(providers, fake):
    deep = "[" * 100_000 + "]" * 100_000
    nested = [
        *QUESTION,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_1", "name": "get_time", "arguments": deep}],
        },
    ]
    with pytest.raises(UnsupportedInput, match="not a JSON object"):
        complete(providers, "anthropic", nested)
    assert fake.requests == []


@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini", "ollama"])
def test_a_reply_nested_past_the_parsers_depth_is_unusable(providers, fake, name):
    fake.reply(body=b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with pytest.raises(ProviderError, match="no usable reply"):
        complete(providers, name)
    deep = b"[" * 100_000 + b"]" * 100_000
    fake.reply(chunks=[deep + b"\n"] if name == "ollama" else [b"data: " + deep + b"\n\n"])
    with pytest.raises(ProviderError, match="malformed stream"):
        list(providers[name].stream(QUESTION, DEFAULT_MODELS[name], tooling=TOOLS))
