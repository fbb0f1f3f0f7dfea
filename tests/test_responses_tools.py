"""Function tools through the Responses API, with the official `openai` SDK against a real HTTP
server of the app and the fake providers (each answering in its own format): function_call
output items, plain and streamed (checked by the SDK's stream accumulator), a tool loop
continued by previous_response_id or by resending the items, on every kind of provider, and
what is refused."""

import json

import pytest
import requests

from tests.fake_provider import SIGNATURE, FakeCall, chunk
from tests.helpers import bearer

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
PARIS = '{"city": "Paris"}'


def sessions(client, headers):
    return [
        [m["content"] for m in s["messages"]]
        for s in client.get("/api/ai_chat/history", headers=headers).json
    ]


@pytest.mark.parametrize("model", ["openai", "anthropic", "gemini", "ollama"])
def test_a_tool_loop_continued_by_previous_response_id(sdk, fake, model):
    fake.calls = [FakeCall("get_weather", PARIS)]
    called = sdk.responses.create(model=model, input="Weather in Paris?", tools=[WEATHER])
    assert called.status == "completed" and called.output_text == ""
    [call] = called.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert call.id.startswith("fc_") and call.call_id and call.status == "completed"
    assert called.tools[0].name == "get_weather" and called.tools[0].type == "function"
    answered = sdk.responses.create(
        model=model,
        previous_response_id=called.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],
    )
    assert answered.output_text == "Tool said: sunny"
    items = sdk.responses.input_items.list(answered.id)
    assert [i.type for i in items.data] == ["function_call_output"]


def test_a_tool_loop_resent_whole_needs_no_stored_state(sdk, fake):
    fake.calls = [FakeCall("get_weather", PARIS)]
    question = {"role": "user", "content": "Weather in Paris?"}
    called = sdk.responses.create(model="openai", input=[question], tools=[WEATHER], store=False)
    call = called.output[0]
    answered = sdk.responses.create(
        model="openai",
        input=[
            question,
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "rain"},
        ],
        tools=[WEATHER],
        store=False,
    )
    assert answered.output_text == "Tool said: rain"
    sent = fake.requests[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.call_id
    assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "rain"}


@pytest.mark.parametrize("model", ["openai", "anthropic", "gemini"])
def test_streamed_function_calls_are_what_the_sdks_accumulator_makes_of_them(sdk, fake, model):
    fake.calls = [FakeCall("get_weather", PARIS), FakeCall("get_weather", '{"city": "Rome"}')]
    fake.fragments = 3
    with sdk.responses.stream(model=model, input="Paris and Rome?", tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert "response.function_call_arguments.delta" in kinds
    assert kinds.count("response.function_call_arguments.done") == 2
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    calls = [item for item in final.output if item.type == "function_call"]
    assert [json.loads(c.arguments)["city"] for c in calls] == ["Paris", "Rome"]
    kept = sdk.responses.retrieve(final.id)
    assert [c.arguments for c in kept.output] == [c.arguments for c in calls]
    answered = sdk.responses.create(
        model=model,
        previous_response_id=final.id,
        input=[
            {"type": "function_call_output", "call_id": c.call_id, "output": w}
            for c, w in zip(calls, ("sunny", "rain"), strict=True)
        ],
        tools=[WEATHER],
        stream=True,
    )
    done = list(answered)[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == "Tool said: sunny | rain"


def test_the_echo_model_calls_the_function_tool_choice_names(sdk, client, ada):
    called = sdk.responses.create(
        model="echo",
        input="Weather?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
    )
    [call] = called.output
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": ""}
    answered = sdk.responses.create(
        model="echo",
        previous_response_id=called.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "hail"}],
    )
    assert answered.output_text == "Echo: hail"
    [session] = sessions(client, ada)  # the whole loop in one session
    assert session[0] == "Weather?" and session[-1] == "Echo: hail"


REFUSED = [
    ({"tools": [{"type": "function", "name": "bad name"}]}, "tools"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "other"}}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f"}]}, "input"),
    (
        {
            "input": [
                {"role": "user", "content": "hi"},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            ]
        },
        "input",
    ),
]


@pytest.mark.parametrize(("extra", "param"), REFUSED)
def test_bad_function_tools_and_items_are_400s(server, key, extra, param):
    body = {"model": "echo", "input": "hi"} | extra
    response = requests.post(server + "/v1/responses", headers=bearer(key), json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_deleting_a_function_outputs_turn_removes_every_output(sdk, fake, client, ada):
    fake.calls = [FakeCall("get_weather", PARIS), FakeCall("get_weather", '{"city": "Rome"}')]
    called = sdk.responses.create(model="openai", input="Paris and Rome?", tools=[WEATHER])
    outputs = [
        {"type": "function_call_output", "call_id": c.call_id, "output": w}
        for c, w in zip(called.output, ("sunny", "rain"), strict=True)
    ]
    answered = sdk.responses.create(
        model="openai", previous_response_id=called.id, input=outputs, tools=[WEATHER]
    )
    shown = client.get("/api/ai_chat/history?include_tools=true", headers=ada).json
    assert len(shown[0]["messages"]) == 5  # question, calls, two outputs, answer
    sdk.responses.delete(answered.id)
    shown = client.get("/api/ai_chat/history?include_tools=true", headers=ada).json
    assert [m["content"] for m in shown[0]["messages"]] == ["Paris and Rome?", ""]


@pytest.mark.parametrize("stream", [False, True])
def test_geminis_thought_signature_goes_back_with_its_call(sdk, fake, stream):
    fake.calls = [FakeCall("get_weather", PARIS)]
    asked = {"model": "gemini", "input": "Weather in Paris?", "tools": [WEATHER]}
    if stream:
        with sdk.responses.stream(**asked) as events:
            called = events.get_final_response()
    else:
        called = sdk.responses.create(**asked)
    assert "thought" not in json.dumps(called.model_dump())  # Gemini's own, never shown
    call = called.output[0]
    sdk.responses.create(
        model="gemini",
        previous_response_id=called.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],
    )
    parts = [p for c in fake.requests[-1].body["contents"] for p in c["parts"]]
    [sent] = [p for p in parts if "functionCall" in p]
    assert sent["thoughtSignature"] == SIGNATURE


def test_item_references_name_the_callers_own_stored_items(sdk, server, client, bob, fake):
    first = sdk.responses.create(model="echo", input="one")
    [asked] = sdk.responses.input_items.list(first.id).data
    refer = [
        {"type": "item_reference", "id": asked.id},
        {"type": "item_reference", "id": first.output[0].id},
        {"role": "user", "content": "two"},
    ]
    sdk.responses.create(model="openai", input=refer)
    assert [(m["role"], m["content"]) for m in fake.requests[-1].body["messages"]] == [
        ("user", "one"),
        ("assistant", "Echo: one"),
        ("user", "two"),
    ]
    bobs = client.post("/api/keys", headers=bob, json={"name": "sdk"}).json["key"]
    for someone, ref in ((bobs, asked.id), (bobs, first.output[0].id), (None, "msg_" + "0" * 52)):
        response = requests.post(
            server + "/v1/responses",
            headers=bearer(someone or sdk.api_key),
            json={"model": "echo", "input": [{"type": "item_reference", "id": ref}]},
            timeout=10,
        )
        assert response.status_code == 400 and response.json()["error"]["param"] == "input"
        assert f"Item with id '{ref}' not found." in response.json()["error"]["message"]


def test_reasoning_text_and_a_call_in_one_stream_are_three_items_in_order(sdk, fake):
    call = {"index": 0, "id": "call_9", "type": "function"}
    fake.reply(
        chunks=[
            chunk({"role": "assistant", "reasoning_content": "think"}),
            chunk({"content": "Let me check."}),
            chunk({"tool_calls": [call | {"function": {"name": "get_weather", "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
            chunk({"reasoning_content": "late thought"}),
            chunk(finish="tool_calls", usage={"prompt_tokens": 5, "completion_tokens": 6}),
            b"data: [DONE]\n\n",
        ]
    )
    with sdk.responses.stream(model="openai", input="Weather?", tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    assert final.output_text == "Let me check." and final.output[0].content[0].text == "think"
    assert final.output[2].arguments == '{"city": "Paris"}' and final.output[2].call_id == "call_9"
    kept = sdk.responses.retrieve(final.id)
    assert [item.id for item in kept.output] == [item.id for item in final.output]
    assert kept.usage.total_tokens == 11
