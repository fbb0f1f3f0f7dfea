"""Tools and structured outputs on /v1/chat/completions, through the official `openai` SDK
pointed at a real HTTP server of the app, every provider behind it a fake server speaking its own
tool format: tool round trips whole and streamed, the SDK's stream accumulation,
`chat.completions.parse` with a pydantic model, and the conversation kept in one session."""

import json
import time

import pytest
import requests
from pydantic import BaseModel
from sqlalchemy import func, select

from polygenix.chat.sweep import sweep_dead_streams
from polygenix.extensions import db
from polygenix.models import Message
from tests.fake_provider import SIGNATURE, STREAM_WRITERS, FakeCall
from tests.helpers import in_thread, serving, wait_for
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
def client(provider_app):
    return provider_app.test_client()


@pytest.fixture
def app_db(provider_app):
    def run(query):
        with provider_app.app_context():
            return query()

    return run


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


@pytest.mark.parametrize("name", ["openai", "deepseek", "anthropic", "gemini", "ollama", "echo"])
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


# --- what is refused: OpenAI's 400 naming the field ------------------------------------------


def post(client, headers, **body):
    body.setdefault("model", "echo")
    body.setdefault("messages", [QUESTION])
    return client.post("/v1/chat/completions", headers=headers, json=body)


def refused(response, param):
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param), error
    return error["message"]


def function(name, **extra):
    return {"type": "function", "function": {"name": name, **extra}}


@pytest.mark.parametrize(
    ("body", "param", "said"),
    [
        ({"tools": [function("get weather")]}, "tools", "^[a-zA-Z0-9_-]{1,64}$"),
        ({"tools": [function("x" * 65)]}, "tools", "1 to 64"),
        ({"tools": [function("f"), function("f")]}, "tools", "unique"),
        ({"tools": [function(f"f{n}") for n in range(129)]}, "tools", "at most 128"),
        ({"tools": [{"type": "code_interpreter"}]}, "tools", "function"),
        ({"tools": {"f": 1}}, "tools", "list"),
        ({"tools": [function("f", parameters="{}")]}, "tools", "JSON Schema object"),
        ({"tools": [function("f", parameters=[])]}, "tools", "JSON Schema object"),
        ({"tools": [function("f", strict="yes")]}, "tools", "true or false"),
        ({"tools": [function("f")], "tool_choice": "any"}, "tool_choice", "required"),
        (
            {"tools": [function("f")], "tool_choice": {"type": "function", "function": {}}},
            "tool_choice",
            "not one of the tools",
        ),
        (
            {"tools": [function("f")], "tool_choice": function("g")},
            "tool_choice",
            "'g'",
        ),
        ({"tool_choice": "required"}, "tool_choice", "only allowed with tools"),
        ({"tools": [function("f")], "parallel_tool_calls": "no"}, "parallel_tool_calls", ""),
        ({"response_format": {"type": "xml"}}, "response_format", "json_schema"),
        ({"response_format": "json"}, "response_format", "json_object"),
        ({"response_format": {"type": "json_schema"}}, "response_format", "object"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format",
            "name",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "a", "schema": "{}"},
                }
            },
            "response_format",
            "JSON Schema object",
        ),
        ({"functions": [{"name": "f"}]}, "functions", "not supported"),
        ({"function_call": "auto"}, "function_call", "not supported"),
    ],
)
def test_invalid_tooling_is_a_400_naming_the_field(client, ada, body, param, said):
    assert said in refused(post(client, ada, **body), param)


CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
CALLING = {"role": "assistant", "content": None, "tool_calls": [CALL]}


@pytest.mark.parametrize(
    ("messages", "said"),
    [
        ([QUESTION, {"role": "tool", "tool_call_id": "call_1", "content": "x"}], "earlier"),
        ([QUESTION, {"role": "tool", "content": "x"}], "tool_call_id"),
        (  # the result comes before its call
            [QUESTION, {"role": "tool", "tool_call_id": "call_1", "content": "x"}, CALLING],
            "earlier",
        ),
        ([QUESTION, {"role": "assistant", "content": None}], "content is required"),
        ([{"role": "user", "content": "hi", "tool_calls": [CALL]}], "only an assistant"),
        ([QUESTION, CALLING, CALLING], "unique"),  # the same id twice
        ([QUESTION, {"role": "assistant", "tool_calls": [{"id": "c", "type": "x"}]}], "function"),
        ([QUESTION, {"role": "assistant", "tool_calls": [CALL | {"id": ""}]}], ".id"),
        (
            [QUESTION, {"role": "assistant", "tool_calls": [CALL | {"function": {"name": "f"}}]}],
            "arguments",
        ),
        (
            [QUESTION, CALLING, {"role": "tool", "tool_call_id": "call_1", "content": None}],
            "content",
        ),
        (
            [QUESTION, {"role": "assistant", "content": "", "function_call": {"name": "f"}}],
            "deprecated",
        ),
        ([QUESTION, CALLING], "The last message must be the user's"),  # ends with calls
    ],
)
def test_invalid_tool_messages_are_a_400_on_messages(client, ada, messages, said):
    assert said in refused(post(client, ada, messages=messages), "messages")


def test_a_tool_call_id_of_another_session_or_user_is_refused(client, ada, bob, fake):
    """A result must answer a call of the same request: an id from elsewhere (another of the
    user's sessions, another user's) answers nothing."""
    first = post(client, bob, tools=[WEATHER], tool_choice="required").json
    bobs = first["choices"][0]["message"]["tool_calls"][0]["id"]
    answer = {"role": "tool", "tool_call_id": bobs, "content": "stolen"}
    assert "earlier" in refused(post(client, ada, messages=[QUESTION, answer]), "messages")


def test_ten_thousand_tools_and_a_huge_schema_are_refused_cleanly(client, ada):
    many = [function(f"f{n}") for n in range(10_000)]
    assert "at most 128" in refused(post(client, ada, tools=many), "tools")
    # Over V1_MAX_BODY_BYTES (16 MiB, the room a request's inline images need).
    huge = {"type": "object", "properties": {f"p{n}": {"type": "string"} for n in range(600_000)}}
    response = post(client, ada, tools=[function("f", parameters=huge)])
    assert response.status_code == 413 and response.json["error"]["type"]


def test_a_schema_nested_past_the_limit_is_a_400_not_a_crash(client, ada):
    schema: dict = {"type": "object"}
    for _ in range(100):
        schema = {"type": "object", "properties": {"a": schema}}
    response = post(client, ada, tools=[function("f", parameters=schema)])
    assert response.status_code == 400 and "error" in response.json


def test_tool_choice_none_is_passed_on_and_the_model_answers_in_text(client, ada, fake):
    response = post(client, ada, model="openai", tools=[WEATHER], tool_choice="none")
    assert response.status_code == 200, response.json
    body = fake.requests[-1].body
    assert body["tool_choice"] == "none" and body["tools"] == [WEATHER]
    choice = response.json["choices"][0]
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]


def test_tools_parallel_calls_and_format_reach_openai_as_given(client, ada, fake):
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    post(
        client,
        ada,
        model="openai",
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
        response_format=fmt,
    )
    body = fake.requests[-1].body
    assert body["tools"] == [WEATHER, TIME]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert body["parallel_tool_calls"] is False
    assert body["response_format"] == fmt


def test_the_providers_own_error_for_a_bad_schema_reaches_the_client(client, ada, fake):
    """The provider's words, in a 502 (the provider refused): the question is kept, flagged."""
    bad = function("f", parameters={"type": "dict"})  # the fake's providers know no "dict"
    for name in ("openai", "anthropic", "gemini", "ollama"):
        response = post(client, ada, model=name, tools=[bad])
        assert response.status_code == 502, (name, response.json)
        said = response.json["error"]["message"]
        assert said.startswith(f"{name} rejected the request (HTTP 400): "), said
    kept = history(client, ada)
    assert all(s["messages"][0]["failed"] for s in kept) and len(kept) == 4


# --- a framework: LangChain's ChatOpenAI --------------------------------------------------------


@pytest.fixture
def langchain(server, key):
    from langchain_openai import ChatOpenAI

    def chat(model="openai"):
        return ChatOpenAI(base_url=server + "/v1", api_key=key, model=model, max_retries=0)

    return chat


def get_weather(city: str) -> str:
    """The weather in a city."""
    return "Sunny"


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini"])
def test_langchain_bind_tools_round_trip(langchain, client, ada, fake, name, stream):
    from langchain_core.messages import HumanMessage, ToolMessage

    # As OpenAI's models write arguments (no spaces), which LangChain re-sends re-serialised.
    fake.calls = [FakeCall("get_weather", '{"city":"Paris"}'), FakeCall("get_time", "")]
    bound = langchain(f"{name}/{DEFAULT_MODELS[name]}").bind_tools([get_weather])

    def run(messages):
        if not stream:
            return bound.invoke(messages)
        chunks = list(bound.stream(messages))
        whole = chunks[0]
        for piece in chunks[1:]:
            whole += piece
        return whole

    messages = [HumanMessage("Weather in Paris?")]
    called = run(messages)
    assert [(c["name"], c["args"]) for c in called.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {}),
    ]
    fake.calls = None
    ids = [c["id"] for c in called.tool_calls]
    messages += [called, *(ToolMessage(content="Sunny", tool_call_id=i) for i in ids)]
    answer = run(messages)
    assert answer.content == "Tool said: Sunny | Sunny" and not answer.tool_calls
    messages += [answer, HumanMessage("Thanks")]
    assert run(messages).tool_calls  # the fake calls a tool whenever it is asked with tools
    sessions = history(client, ada, include_tools="true")
    assert len(sessions) == 1  # each request continued the one session
    kept = [m.get("tool_call_id") for m in sessions[0]["messages"]]
    assert kept == [None, None, *ids, None, None, None]


def test_langchain_with_structured_output(langchain):
    answer = langchain().with_structured_output(Answer).invoke("Say hello")
    assert answer == Answer(answer="Hello from gpt-4.1-mini")


# --- streams: shapes on every provider, cuts, races ----------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
def test_every_providers_stream_gives_openais_chunks(sdk, fake, name):
    fake.calls = [FakeCall("get_weather", PARIS), FakeCall("get_time", "{}")]
    fake.fragments = 5
    chunks = list(
        sdk.chat.completions.create(
            model=f"{name}/{DEFAULT_MODELS[name]}",
            messages=[QUESTION],
            tools=[WEATHER, TIME],
            stream=True,
        )
    )
    entries = [c.choices[0].delta.tool_calls or [] for c in chunks]
    for entry in entries:  # at most one entry per call in a chunk
        assert len({e.index for e in entry}) == len(entry)
    begun = [e for entry in entries for e in entry if e.id]
    assert [(e.index, e.type, e.function.name) for e in begun] == [
        (0, "function", "get_weather"),
        (1, "function", "get_time"),
    ]
    for index, whole in ((0, PARIS), (1, "{}")):
        pieces = [e.function.arguments or "" for en in entries for e in en if e.index == index]
        assert json.loads("".join(pieces)) == json.loads(whole)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def raw_stream(server, key, **body):
    response = requests.post(
        server + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"stream": True, "messages": [QUESTION]} | body,
        timeout=10,
    )
    events = [
        json.loads(line[6:])
        for line in response.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    return response, events


@pytest.mark.parametrize(("name", "keep"), [("openai", 4), ("anthropic", 4), ("gemini", 1)])
def test_a_stream_cut_inside_a_call_is_an_error_and_stored_incomplete(
    server, key, client, ada, fake, name, keep
):
    calls = [FakeCall("get_weather", PARIS), FakeCall("get_time", "{}")]
    chunks = STREAM_WRITERS[name](DEFAULT_MODELS[name], "", calls, 9)
    first = next(n for n, c in enumerate(chunks) if b"get_weather" in c)
    fake.reply(chunks=chunks[: first + keep])
    response, events = raw_stream(server, key, model=name, tools=[WEATHER, TIME])
    assert response.status_code == 200
    assert (
        "error" in events[-1] and "before the reply was complete" in events[-1]["error"]["message"]
    )
    assert not any(e.get("choices") and e["choices"][0]["finish_reason"] for e in events)
    # Kept, flagged incomplete with the reason: never a whole call, never in the transcript.
    shown = history(client, ada)[0]["messages"]
    assert [(m["is_bot"], m["content"]) for m in shown] == [(False, QUESTION["content"])]
    reply = history(client, ada, include_tools="true")[0]["messages"][1]
    assert reply["incomplete"] is True and reply["finish_reason"] is None
    assert reply["error"] and reply["tool_calls"][0]["function"]["name"] == "get_weather"
    if name != "gemini":  # Gemini sends a call whole; the others' arguments were cut
        assert reply["tool_calls"][0]["function"]["arguments"] != PARIS


def test_a_session_deleted_during_a_streamed_tool_turn(server, key, client, ada, fake, app_db):
    chunks = STREAM_WRITERS["openai"]("gpt-4.1-mini", "", [FakeCall("get_weather", PARIS)], 6)
    fake.reply(chunks=chunks, gap=0.2)
    finished = in_thread(lambda: raw_stream(server, key, model="openai", tools=[WEATHER]))
    wait_for(lambda: history(client, ada), what="the question stored")
    assert client.delete("/api/ai_chat/1", headers=ada).status_code == 200
    _, events = finished()
    assert events[-1]["error"]["message"] == "Chat session not found"
    assert any(e["choices"][0]["delta"].get("tool_calls") for e in events[:-1])
    assert history(client, ada) == []
    assert app_db(lambda: db.session.scalar(select(func.count(Message.id)))) == 0


def test_each_model_call_of_a_tool_loop_is_one_charged_turn(sdk, client, ada, fake):
    tool_loop(sdk, fake, "openai")
    rows = client.get("/api/usage", headers=ada, query_string={"group_by": "model"}).json["rows"]
    assert [(r["model"], r["calls"]) for r in rows] == [("openai/gpt-4.1-mini", 2)]
    assert rows[0]["prompt_tokens"] == 22 and rows[0]["completion_tokens"] == 14


# --- kept: threading, what history shows, export ------------------------------------------


def test_the_original_clients_history_is_the_plain_transcript(sdk, client, ada, fake):
    """By default history, a session and its export show the questions and text answers, in
    the fields they always had; include_tools shows the whole exchange in order."""
    first, second, _ = tool_loop(sdk, fake, "anthropic")
    plain = client.get("/api/ai_chat/1", headers=ada).json["messages"]
    assert [m["content"] for m in plain] == [QUESTION["content"], "Tool said: Sunny, 21°C | 10:00"]
    assert all("tool_calls" not in m and "tool_call_id" not in m for m in plain)
    summary = client.get("/api/ai_chat/sessions", headers=ada).json[0]
    assert summary["message_count"] == 2
    whole = client.get("/api/ai_chat/1?include_tools=true", headers=ada).json["messages"]
    ids = [c.id for c in first.choices[0].message.tool_calls]
    assert [(m["content"], m.get("tool_call_id")) for m in whole] == [
        (QUESTION["content"], None),
        ("", None),
        ("Sunny, 21°C", ids[0]),
        ("10:00", ids[1]),
        ("Tool said: Sunny, 21°C | 10:00", None),
    ]
    assert whole[1]["finish_reason"] == "tool_calls" and whole[4]["finish_reason"] == "stop"
    exported = client.get("/api/ai_chat/1/export?format=json", headers=ada).json
    assert len(exported["messages"]) == 2
    exported = client.get("/api/ai_chat/1/export?format=json&include_tools=true", headers=ada)
    assert [m.get("tool_call_id") for m in exported.json["messages"]] == [None, None, *ids, None]
    markdown = client.get("/api/ai_chat/1/export?include_tools=true", headers=ada)
    text = markdown.get_data(as_text=True)
    assert f"Tool result ({ids[0]})" in text and "Calls `get_weather`" in text
    everything = client.get("/api/ai_chat/export?include_tools=true", headers=ada).json
    assert len(everything["sessions"][0]["messages"]) == 5
    assert client.get("/api/ai_chat/1?include_tools=yes", headers=ada).status_code == 422


def test_a_native_turn_after_a_tool_loop_keeps_working(sdk, client, ada, fake):
    tool_loop(sdk, fake, "openai")
    fake.reset()
    reply = client.post(
        "/api/ai_chat/request",
        headers=ada,
        json={"content": "And tomorrow?", "session_id": 1, "model": "openai"},
    )
    assert reply.status_code == 200, reply.json
    sent = fake.requests[-1].body["messages"]
    # The tool exchange is a /v1 client's context; the native turn sends the plain turns.
    assert all(m["role"] in ("system", "user", "assistant") for m in sent)
    assert all("tool_calls" not in m for m in sent)
    assert client.post("/api/ai_chat/1/regenerate", headers=ada, json={}).status_code == 200


def test_a_tool_loop_not_stored_and_one_in_a_named_session(sdk, server, key, client, ada, fake):
    fake.calls = [FakeCall("get_weather", PARIS)]
    messages = [QUESTION]
    first = sdk.chat.completions.create(
        model="openai", messages=messages, tools=[WEATHER], store=False
    )
    assert first.choices[0].finish_reason == "tool_calls"
    assert history(client, ada) == []
    raw = sdk.chat.completions.with_raw_response.create(
        model="openai",
        messages=messages,
        tools=[WEATHER],
        extra_headers={"X-PolyGenix-Session": "7"},
    )
    call = raw.parse().choices[0].message.tool_calls[0]
    fake.calls = None
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny"},
    ]
    sdk.chat.completions.create(
        model="openai", messages=messages, extra_headers={"X-PolyGenix-Session": "7"}
    )
    [session] = history(client, ada, include_tools="true")
    assert session["chat_id"] == 7 and len(session["messages"]) == 4


def test_a_retried_tool_turn_leaves_its_results_once(client, ada, fake):
    """A tool-results turn whose call failed, retried with the same Idempotency-Key: its
    failed question and the results that came with it give way to the retry's."""
    call = {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": ""}}
    other = call | {"id": "call_2"}
    messages = [
        QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [call, other]},
        {"role": "tool", "tool_call_id": "call_1", "content": "10:00"},
        {"role": "tool", "tool_call_id": "call_2", "content": "11:00"},
    ]
    headers = ada | {"Idempotency-Key": "retry-me"}
    fake.reply(status=400, body={"error": {"message": "no"}})
    assert post(client, headers, model="openai", messages=messages).status_code == 502
    response = post(client, headers, model="openai", messages=messages)
    assert response.status_code == 200, response.json
    [session] = history(client, ada, include_tools="true")
    assert [(m["content"], m["failed"]) for m in session["messages"]] == [
        (QUESTION["content"], False),
        ("", False),
        ("10:00", False),
        ("11:00", False),
        ("Tool said: 10:00 | 11:00", False),
    ]


def test_a_tool_loop_reaches_anthropic_and_ollama_in_their_own_shapes(client, ada, fake):
    """The second request of a loop, as each provider is sent it, field by field: results given
    as text parts are joined."""
    call = {"id": "toolu_1", "type": "function", "function": {"name": "get_weather"}}
    call["function"]["arguments"] = PARIS
    messages = [
        QUESTION,
        {"role": "assistant", "content": "Let me look.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": [{"type": "text", "text": "Sun"}]},
    ]
    post(client, ada, model="anthropic", messages=messages, tools=[WEATHER])
    assert fake.requests[-1].body["messages"] == [
        {"role": "user", "content": QUESTION["content"]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sun"}],
        },
    ]
    assert fake.requests[-1].body["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city",
            "input_schema": WEATHER["function"]["parameters"],
        }
    ]
    post(client, ada, model="ollama", messages=messages, tools=[WEATHER])
    assert fake.requests[-1].body["messages"] == [
        {"role": "user", "content": QUESTION["content"]},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "Sun", "tool_name": "get_weather"},
    ]


def test_a_long_streamed_call_keeps_its_lease_and_saves_its_progress(
    make_app, provider_config, auth, fake
):
    """A reply that only streams a call's arguments, for longer than a lease lasts, saves as a
    reply with text does: the sweep never takes it for a dead stream, and what it had said is
    kept meanwhile (flagged while unfinished)."""
    app = make_app(
        provider_config | {"STREAM_KEEPALIVE_SECONDS": 0.2, "STREAM_SAVE_INTERVAL": 0.05}
    )
    client = app.test_client()
    ada = auth.register(client=client)
    key = client.post("/api/keys", headers=ada, json={"name": "sdk"}).json["key"]
    chunks = STREAM_WRITERS["openai"]("gpt-4.1-mini", "", [FakeCall("get_weather", PARIS)], 16)
    fake.reply(chunks=chunks, gap=0.06)  # about a second, more than twice the 0.45 s lease

    def saved():
        with app.app_context():
            return db.session.scalar(select(Message.tool_calls).where(Message.is_bot.is_(True)))

    with serving(app) as base:
        finished = in_thread(lambda: raw_stream(base, key, model="openai", tools=[WEATHER]))
        wait_for(lambda: saved(), what="the call saved mid-stream")
        partial = saved()[0]["arguments"]
        time.sleep(0.6)
        with app.app_context():
            assert sweep_dead_streams() == 0
        _, events = finished()
    assert partial != PARIS and PARIS.startswith(partial)
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"
    reply = history(client, ada, include_tools="true")[0]["messages"][1]
    assert reply["incomplete"] is False and reply["tool_calls"][0]["function"]["arguments"] == PARIS


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_call_ids_stay_unique_in_the_conversation(sdk, client, ada, fake, stream):
    """A provider that numbers its calls from call_0 in every reply: the second reply's call
    is given a new id, so the conversation's ids stay unique and its next request is taken."""
    messages = []
    for question in (QUESTION, {"role": "user", "content": "And in Lima?"}):
        messages.append(question)
        fake.calls = [FakeCall("get_weather", PARIS, id="call_0")]
        reply = ask(sdk, "openai", messages, stream, tools=[WEATHER]).choices[0].message
        [call] = reply.tool_calls
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny"},
        ]
        fake.calls = None
        answer = ask(sdk, "openai", messages, stream, tools=[WEATHER]).choices[0].message
        assert answer.content == "Tool said: Sunny"
        messages.append({"role": "assistant", "content": answer.content})
    ids = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    assert ids[0] == "call_0" and ids[1] != "call_0" and ids[1].startswith("call_")
    [session] = history(client, ada, include_tools="true")
    stored = [c["id"] for m in session["messages"] for c in m.get("tool_calls", [])]
    assert stored == ids and len(session["messages"]) == 8
