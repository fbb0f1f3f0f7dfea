"""The Responses API under /v1, through the official `openai` SDK pointed at a real HTTP server
of the app: responses plain and streamed (checked by the SDK's own stream accumulator), their
state (previous_response_id chains across providers, retrieve, delete, input items, store
false), and what an attacker would try: other users' ids, deleted sessions, two continuations
of one response at once."""

import re
import threading

import openai
import pytest
import requests

from tests.fake_provider import chat_body, openai_stream
from tests.helpers import bearer, in_thread, serving, sessions, wait_for
from tests.openai_sdk import openai_sdk


def sent_texts(body: dict) -> list[tuple[str, str]]:
    """The (role, text) a provider was sent, whatever its wire format."""
    if "contents" in body:  # Gemini
        said = [(c["role"], "".join(p["text"] for p in c["parts"])) for c in body["contents"]]
        system = body.get("systemInstruction")
        head = [("system", system["parts"][0]["text"])] if system else []
        return head + [("assistant" if r == "model" else r, t) for r, t in said]
    head = [("system", body["system"])] if isinstance(body.get("system"), str) else []
    return head + [(m["role"], m["content"]) for m in body["messages"]]


# --- a response, whole and streamed ----------------------------------------------------------


def test_a_response_is_what_the_sdk_expects_and_is_a_stored_turn(sdk, client, ada, fake):
    raw = sdk.responses.with_raw_response.create(
        model="openai", input="What is 2+2?", metadata={"ticket": "7"}
    )
    response = raw.parse()
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.error is None
    assert response.model == "openai/gpt-4.1-mini"
    assert response.output_text == "Hello from gpt-4.1-mini"
    [message] = response.output
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.content[0].type == "output_text"
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (11, 7, 18)
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert response.store is True and response.previous_response_id is None
    assert response.metadata == {"ticket": "7"}
    assert fake.requests[-1].body["messages"] == [{"role": "user", "content": "What is 2+2?"}]
    number = int(raw.headers["X-PolyGenix-Session"])
    assert sessions(client, ada) == [(number, ["What is 2+2?", "Hello from gpt-4.1-mini"])]
    assert sdk.responses.retrieve(response.id) == response


def test_instructions_and_options_reach_the_provider(sdk, fake):
    sdk.responses.create(
        model="openai",
        instructions="Answer in French.",
        input=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "input_text", "text": "Hello, "}]},
            {"type": "message", "role": "user", "content": "you"},
        ],
        temperature=0.4,
        top_p=0.9,
        max_output_tokens=50,
    )
    body = fake.requests[-1].body
    assert body["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello, "},
        {"role": "user", "content": "you"},
    ]
    assert (body["temperature"], body["top_p"], body["max_completion_tokens"]) == (0.4, 0.9, 50)


def test_a_streamed_response_is_what_the_sdks_accumulator_makes_of_it(sdk, fake):
    with sdk.responses.stream(model="openai", input="Stream it") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "Hello from the stream" and final.status == "completed"
    assert final.usage.total_tokens == 18
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    kept = sdk.responses.retrieve(final.id)  # the stream's last event, as it was stored
    fields = ("id", "created_at", "status", "output_text", "usage", "model")
    assert [getattr(kept, f) for f in fields] == [getattr(final, f) for f in fields]
    assert kept.output[0].id == final.output[0].id


def test_reasoning_is_a_reasoning_item_before_the_message(sdk, fake):
    fake.reply(body=chat_body("deepseek-reasoner", content="9.8", reasoning_content="compare"))
    response = sdk.responses.create(model="deepseek r1", input="9.11 or 9.8?")
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert reasoning.content[0].text == "compare" and reasoning.summary == []
    assert message.type == "message" and response.output_text == "9.8"
    chunks = openai_stream(["9.8"], "deepseek-reasoner")
    thinking = chunks[0].replace(b'"content": ""', b'"content": "", "reasoning_content": "hmm"')
    fake.reply(chunks=[thinking, *chunks[1:]])
    with sdk.responses.stream(model="deepseek r1", input="again?") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[2:5] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
    ]
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].content[0].text == "hmm" and final.output_text == "9.8"


def test_a_reply_cut_at_max_output_tokens_is_incomplete(sdk, fake):
    cut = chat_body(content="Once upon")
    cut["choices"][0]["finish_reason"] = "length"
    fake.reply(body=cut)
    response = sdk.responses.create(model="openai", input="A story", max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete" and response.output_text == "Once upon"
    chunks = openai_stream(["Once"], "m")
    chunks[-3] = chunks[-3].replace(b'"stop"', b'"length"')
    fake.reply(chunks=chunks)
    events = list(sdk.responses.create(model="openai", input="Again", stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


def test_text_format_json_schema_reaches_the_provider(sdk, fake):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    response = sdk.responses.create(
        model="openai",
        input="Where?",
        text={"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}},
    )
    sent = fake.requests[-1].body["response_format"]
    assert sent == {
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": schema, "strict": True},
    }
    assert response.text.format.type == "json_schema" and response.text.format.name == "place"
    sdk.responses.create(model="echo", input="Where?", text={"format": {"type": "json_object"}})


def test_the_echo_model_answers_through_the_responses_api_too(sdk):
    response = sdk.responses.create(model="echo", input="ping")
    assert response.output_text == "Echo: ping" and response.model.startswith("echo")


# --- state: chains, retrieve, delete, input items --------------------------------------------


CHAIN = ["openai", "anthropic", "gemini", "ollama", "mistral", "echo"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_chain_of_responses_continues_across_providers(sdk, fake, client, ada, stream):
    previous, said = None, []
    for n, model in enumerate(CHAIN):
        question = f"question {n}"
        asked = {"model": model, "input": question, "instructions": f"rule {n}"}
        if previous is not None:
            asked["previous_response_id"] = previous.id
        if stream:
            with sdk.responses.stream(**asked) as events:
                response = events.get_final_response()
        else:
            response = sdk.responses.create(**asked)
        assert response.previous_response_id == (previous.id if previous else None)
        if model != "echo":
            sent = [t for t in sent_texts(fake.requests[-1].body) if t[0] != "system"]
            assert sent == [*said, ("user", question)], model
            assert ("system", f"rule {n}") in sent_texts(fake.requests[-1].body)
        said += [("user", question), ("assistant", response.output_text)]
        previous = response
    assert previous.output_text == "Echo: question 5"
    [(_, messages)] = sessions(client, ada)  # one session, every turn in order
    assert messages == [text for _, text in said]


def test_retrieve_delete_and_a_deleted_response_cannot_be_continued(sdk, client, ada):
    first = sdk.responses.create(model="echo", input="one")
    second = sdk.responses.create(model="echo", input="two", previous_response_id=first.id)
    assert sdk.responses.retrieve(second.id).output_text == "Echo: two"
    assert sdk.responses.delete(second.id) is None
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.responses.retrieve(second.id)
    assert raised.value.body["message"] == f"Response with id '{second.id}' not found."
    with pytest.raises(openai.NotFoundError):
        sdk.responses.delete(second.id)
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.responses.create(model="echo", input="three", previous_response_id=second.id)
    assert raised.value.body["code"] == "previous_response_not_found"
    assert raised.value.body["param"] == "previous_response_id"
    [(_, messages)] = sessions(client, ada)  # its turn went from the session too
    assert messages == ["one", "Echo: one"]
    third = sdk.responses.create(model="echo", input="three", previous_response_id=first.id)
    assert third.output_text == "Echo: three"


def test_deleting_a_response_in_the_middle_cuts_its_chain(sdk, fake):
    first = sdk.responses.create(model="openai", input="one")
    second = sdk.responses.create(model="openai", input="two", previous_response_id=first.id)
    sdk.responses.delete(first.id)
    sdk.responses.create(model="openai", input="three", previous_response_id=second.id)
    sent = sent_texts(fake.requests[-1].body)
    assert [t for _, t in sent] == ["two", "Hello from gpt-4.1-mini", "three"]


def test_input_items_are_listed_and_paged_as_openai_does(sdk):
    response = sdk.responses.create(
        model="echo",
        input=[
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ],
    )
    items = sdk.responses.input_items.list(response.id)
    assert [i.content[0].text for i in items.data] == ["c", "b", "a"]  # newest first
    assert items.first_id == items.data[0].id and items.has_more is False
    assert items.data[0].type == "message" and items.data[0].id.startswith("msg_")
    asc = sdk.responses.input_items.list(response.id, order="asc", limit=2)
    assert [i.content[0].text for i in asc.data] == ["a", "b"] and asc.has_more
    rest = sdk.responses.input_items.list(response.id, order="asc", after=asc.last_id)
    assert [i.content[0].text for i in rest.data] == ["c"]
    every = [i.content[0].text for i in sdk.responses.input_items.list(response.id, limit=1)]
    assert every == ["c", "b", "a"]  # the SDK's auto-paging follows has_more and after


def test_store_false_keeps_nothing_but_counts_usage(sdk, client, ada, fake):
    response = sdk.responses.create(model="openai", input="off the record", store=False)
    assert response.store is False and response.output_text == "Hello from gpt-4.1-mini"
    streamed = list(sdk.responses.create(model="openai", input="also", store=False, stream=True))
    assert streamed[-1].type == "response.completed"
    assert sessions(client, ada) == []
    for kept in (response.id, streamed[-1].response.id):
        with pytest.raises(openai.NotFoundError):
            sdk.responses.retrieve(kept)
        with pytest.raises(openai.BadRequestError):
            sdk.responses.create(model="echo", input="more", previous_response_id=kept)
    rows = client.get("/api/usage?group_by=model", headers=ada).json["rows"]
    assert sum(r["calls"] for r in rows if r["model"] == "openai/gpt-4.1-mini") == 2
    kept = sdk.responses.create(model="echo", input="kept")
    aside = sdk.responses.create(
        model="openai", input="aside", previous_response_id=kept.id, store=False
    )
    assert aside.previous_response_id == kept.id
    sent = [t for _, t in sent_texts(fake.requests[-1].body)]
    assert sent == ["kept", "Echo: kept", "aside"]  # a stored response continued unstored
    assert [m for _, m in sessions(client, ada)] == [["kept", "Echo: kept"]]


def test_a_deleted_session_takes_its_responses_with_it(sdk, client, ada):
    raw = sdk.responses.with_raw_response.create(model="echo", input="soon gone")
    response = raw.parse()
    number = raw.headers["X-PolyGenix-Session"]
    assert client.delete(f"/api/ai_chat/{number}", headers=ada).status_code in (200, 204)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError):
        sdk.responses.create(model="echo", input="more", previous_response_id=response.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.input_items.list(response.id)


def test_another_users_responses_are_not_found(sdk, bob_sdk, client, bob):
    mine = sdk.responses.create(model="echo", input="mine")
    with pytest.raises(openai.NotFoundError) as raised:
        bob_sdk.responses.retrieve(mine.id)
    assert raised.value.body["message"] == f"Response with id '{mine.id}' not found."
    with pytest.raises(openai.NotFoundError):
        bob_sdk.responses.input_items.list(mine.id)
    with pytest.raises(openai.NotFoundError):
        bob_sdk.responses.delete(mine.id)
    with pytest.raises(openai.BadRequestError) as raised:
        bob_sdk.responses.create(model="echo", input="steal", previous_response_id=mine.id)
    assert raised.value.body["code"] == "previous_response_not_found"
    assert sessions(client, bob) == []
    assert sdk.responses.retrieve(mine.id).output_text == "Echo: mine"


def test_two_continuations_at_once_are_two_branches(sdk, fake, client, ada):
    root = sdk.responses.create(model="openai", input="root")
    release = threading.Event()
    fake.reply(hold=release, body=chat_body(content="answer A"))
    fake.reply(hold=release, body=chat_body(content="answer B"))
    asked = len(fake.requests)
    branches = [
        in_thread(
            lambda q=q: sdk.responses.create(model="openai", input=q, previous_response_id=root.id)
        )
        for q in ("branch A", "branch B")
    ]
    wait_for(lambda: len(fake.requests) == asked + 2, what="both calls at the provider")
    release.set()
    first, second = (join() for join in branches)
    assert {first.previous_response_id, second.previous_response_id} == {root.id}
    for request in fake.requests[asked:]:  # each was sent the root's turn and its own question
        assert [t for _, t in sent_texts(request.body)][:2] == ["root", "Hello from gpt-4.1-mini"]
    [(_, messages)] = sessions(client, ada)  # both turns, in the root's session
    assert len(messages) == 6
    sdk.responses.create(model="openai", input="on A", previous_response_id=first.id)
    seen = [t for _, t in sent_texts(fake.requests[-1].body)]
    question = seen[2]
    assert seen == ["root", "Hello from gpt-4.1-mini", question, first.output_text, "on A"]
    other = "branch B" if question == "branch A" else "branch A"
    assert other not in seen  # a branch never sees its sibling


# --- what is refused -------------------------------------------------------------------------


REFUSED = [
    ({"tools": [{"type": "web_search"}]}, "tools"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools"),
    ({"background": True}, "background"),
    ({"conversation": "conv_123"}, "conversation"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"frobnicate": 1}, "frobnicate"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"text": {"format": {"type": "yaml"}}}, "text.format"),
    (
        {"text": {"format": {"type": "json_schema", "name": "a b", "schema": {}}}},
        "text.format.name",
    ),
    ({"temperature": 3}, "temperature"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"store": "yes"}, "store"),
    ({"metadata": {"k": 1}}, "metadata"),
    ({"previous_response_id": 12}, "previous_response_id"),
    (
        {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
        "input",
    ),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input"),
    ({"input": [{"role": "assistant", "content": "last word"}]}, "input"),
    ({"input": []}, "input"),
    ({"input": 5}, "input"),
    ({"input": "nul\x00byte"}, "input"),
    ({"input": "   "}, "input"),
    ({"instructions": ["not", "a", "string"]}, "instructions"),
    ({"model": ["echo"]}, "model"),
]


@pytest.mark.parametrize(("extra", "param"), REFUSED)
def test_what_polygenix_cannot_do_is_a_400_naming_the_field(server, key, extra, param):
    body = {"model": "echo", "input": "hi"} | extra
    response = requests.post(server + "/v1/responses", headers=bearer(key), json=body, timeout=10)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_an_unknown_model_is_the_sdks_not_found(sdk):
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.responses.create(model="nosuch/model", input="hi")
    assert raised.value.body["code"] == "model_not_found"


def test_a_provider_failure_is_an_api_error_and_keeps_the_message(sdk, fake, client, ada):
    fake.reply(500, {"error": {"message": "down"}}, times=3)
    with pytest.raises(openai.InternalServerError):
        sdk.responses.create(model="openai", input="lost?")
    [(_, [question])] = sessions(client, ada)
    assert question == "lost?"


def test_a_stream_cut_midway_is_a_failed_response(sdk, fake, client, ada):
    fake.reply(
        chunks=openai_stream(["part"], "m")[:2] + [b'data: {"error": {"message": "boom"}}\n\n']
    )
    events = list(sdk.responses.create(model="openai", input="go", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.code == "server_error"
    assert "boom" in events[-1].response.error.message
    assert events[-2].type == "response.output_item.done"
    assert events[-2].item.status == "incomplete" and events[-2].item.content[0].text == "part"
    [(_, [question, reply])] = sessions(client, ada)  # what was said is kept, as for any stream
    assert (question, reply) == ("go", "part")


@pytest.mark.parametrize(
    "response_id",
    ["resp_" + "0" * 48, "resp_x", "..%2F..%2Fapi%2Fuser", "resp_" + "a" * 5000, "resp_%E2%80%AE"],
)
def test_hostile_ids_are_plain_404s(server, key, response_id):
    for method, path in (
        ("GET", f"/v1/responses/{response_id}"),
        ("DELETE", f"/v1/responses/{response_id}"),
        ("GET", f"/v1/responses/{response_id}/input_items"),
    ):
        response = requests.request(method, server + path, headers=bearer(key), timeout=10)
        assert response.status_code == 404, (method, path, response.text)
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_hostile_bodies_are_400s(server, key, provider_app):
    nested = '{"model": "echo", "input": ' + "[" * 5000 + "]" * 5000 + "}"
    response = requests.post(
        server + "/v1/responses",
        headers=bearer(key) | {"Content-Type": "application/json"},
        data=nested,
        timeout=20,
    )
    assert response.status_code == 400 and response.json()["error"]["param"] in ("input", None)
    most = provider_app.config["V1_MAX_MESSAGES"]
    for body in (
        {"model": "echo", "input": [{"role": "user", "content": "x"}] * (most + 1)},
        {"model": "echo", "input": "x" * (provider_app.config["MAX_MESSAGE_CHARS"] + 1)},
        {"model": "echo", "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
        {"model": "echo", "input": "hi", "metadata": {str(n): "v" for n in range(17)}},
        [1, 2, 3],
    ):
        response = requests.post(
            server + "/v1/responses", headers=bearer(key), json=body, timeout=20
        )
        assert response.status_code == 400, response.text[:300]
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] in (
            "input",
            "metadata",
            "body",
        )


def test_governance_applies_as_to_any_v1_call(sdk, server, client, auth, ada):
    admin = auth.admin()
    ada_id = auth.user_id(ada)
    limits = f"/api/admin/users/{ada_id}/limits"
    assert client.put(limits, headers=admin, json={"models": ["echo"]}).status_code == 200
    with pytest.raises(openai.PermissionDeniedError):
        sdk.responses.create(model="openai", input="not allowed")
    assert sdk.responses.create(model="echo", input="allowed").output_text == "Echo: allowed"
    client.put(limits, headers=admin, json={"models": None, "token_budget": "1/day"})
    with pytest.raises(openai.RateLimitError) as raised:
        sdk.responses.create(model="echo", input="over budget", stream=True)
    assert raised.value.body["code"] == "insufficient_quota"
    with pytest.raises(openai.AuthenticationError):
        openai_sdk(server, "pgx_nothing").responses.create(model="echo", input="who?")


def test_a_response_deleted_while_continued_is_no_longer_in_the_chain(sdk, fake):
    first = sdk.responses.create(model="openai", input="one")
    release = threading.Event()
    fake.reply(hold=release)
    asked = len(fake.requests)
    later = in_thread(
        lambda: sdk.responses.create(model="openai", input="two", previous_response_id=first.id)
    )
    wait_for(lambda: len(fake.requests) > asked, what="the continuation at the provider")
    sdk.responses.delete(first.id)
    release.set()
    second = later()
    assert second.previous_response_id == first.id  # what it was asked to continue
    sdk.responses.create(model="openai", input="three", previous_response_id=second.id)
    sent = [t for _, t in sent_texts(fake.requests[-1].body)]
    assert sent == ["two", "Hello from gpt-4.1-mini", "three"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_session_deleted_during_a_continuation_keeps_nothing(
    sdk, fake, client, ada, stream, key, server
):
    raw = sdk.responses.with_raw_response.create(model="openai", input="one")
    first, number = raw.parse(), raw.headers["X-PolyGenix-Session"]
    release = threading.Event()
    if stream:  # the stream has begun (the turn is stored) and holds its last chunk back
        fake.reply(pause=release)
    else:
        fake.reply(hold=release)
    asked = len(fake.requests)
    body = {"model": "openai", "input": "two", "previous_response_id": first.id, "stream": stream}
    later = in_thread(
        lambda: requests.post(server + "/v1/responses", headers=bearer(key), json=body, timeout=20)
    )
    wait_for(lambda: len(fake.requests) > asked, what="the continuation at the provider")
    if stream:
        wait_for(lambda: "two" in sessions(client, ada)[0][1], what="the streamed question kept")
    assert client.delete(f"/api/ai_chat/{number}", headers=ada).status_code in (200, 204)
    release.set()
    answer = later()
    if stream:
        assert '"type":"response.failed"' in answer.text
    else:
        assert answer.status_code == 404, answer.text
    assert sessions(client, ada) == []
    with pytest.raises(openai.BadRequestError):
        sdk.responses.create(model="echo", input="x", previous_response_id=first.id)


def test_a_long_chain_sends_its_newest_responses_that_fit(make_app, provider_config, auth, fake):
    app = make_app(provider_config | {"CONTEXT_MAX_CHARS": 120})
    token = auth.tokens(client=app.test_client())["access_token"]
    with serving(app) as base:
        sdk = openai_sdk(base, token)
        previous = None
        for n in range(5):
            question = f"question number {n} " + "." * 10
            extra = {"previous_response_id": previous.id} if previous else {}
            previous = sdk.responses.create(model="openai", input=question, **extra)
    # 120 characters: the new question (30) and one earlier turn (30 + 23), not two.
    sent = [t for _, t in sent_texts(fake.requests[-1].body)]
    assert sent == [
        "question number 3 ..........",
        "Hello from gpt-4.1-mini",
        "question number 4 ..........",
    ]


# --- the request schema's refusals, and include and truncation -------------------------------


def respond(client, headers, **fields):
    return client.post("/v1/responses", headers=headers, json={"model": "echo"} | fields)


def test_a_stored_response_is_retrieved_as_it_was_answered(client, ada):
    # The record keeps the very JSON the call was answered with (serialised once for both).
    answer = respond(client, ada, input="kept", metadata={"k": "é \u2028 \ud83d\ude00"})
    assert answer.status_code == 200
    kept = client.get(f"/v1/responses/{answer.json['id']}", headers=ada)
    assert kept.status_code == 200 and kept.data == answer.data
    assert kept.json["metadata"] == {"k": "é \u2028 😀"}


def test_an_unstored_response_is_answered_in_the_bytes_a_stored_one_is(client, ada):
    # store:false makes no JSON for a record it does not write; its answer is made as ever.
    asked = {"input": "kept or not", "metadata": {"k": "é \u2028 \ud83d\ude00"}}
    kept, aside = respond(client, ada, **asked), respond(client, ada, store=False, **asked)
    assert kept.status_code == aside.status_code == 200
    assert client.get(f"/v1/responses/{aside.json['id']}", headers=ada).status_code == 404

    def shape(answer) -> bytes:
        data = answer.data
        for item in (answer.json, *answer.json["output"]):
            data = data.replace(item["id"].encode(), b"ID")
        data = re.sub(rb'"(created_at|completed_at)":\d+', rb'"\1":0', data)
        return data.replace(b'"store":false', b'"store":true')

    assert b'"store":false' in aside.data and shape(aside) == shape(kept)


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"temperature": True}, "temperature", "temperature must be a number from 0 to 2."),
        ({"temperature": "1"}, "temperature", "from 0 to 2"),
        ({"top_p": 1.01}, "top_p", "top_p must be a number from 0 to 1."),
        ({"max_output_tokens": True}, "max_output_tokens", "a whole number of at least 1."),
        ({"max_output_tokens": 1.5}, "max_output_tokens", "at least 1"),
        ({"max_output_tokens": "١٢"}, "max_output_tokens", "at least 1"),
        ({"stream": 1}, "stream", "stream must be true or false."),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls", "true or false"),
        ({"background": True}, "background", "background responses are not supported"),
        ({"background": "no"}, "background", "true or false"),
        ({"conversation": "conv_1"}, "conversation", "not supported"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt", "not supported"),
        ({"top_logprobs": 2}, "top_logprobs", "logprobs are not supported"),
        ({"metadata": []}, "metadata", "at most 16 pairs"),
        ({"metadata": {"k": "v" * 513}}, "metadata", "at most 512"),
        ({"metadata": {"k" * 65: "v"}}, "metadata", "at most 64 characters"),
        ({"text": "json"}, "text", "text must be an object."),
        (
            {"text": {"format": {"type": "json_schema", "name": "a"}}},
            "text.format.schema",
            "text.format.schema must be a JSON Schema object.",
        ),
        (
            {"text": {"format": {"type": "json_schema", "name": "a", "schema": {}, "strict": 1}}},
            "text.format.strict",
            "true or false",
        ),
        ({"reasoning": "high"}, "reasoning", "reasoning must be an object."),
        ({"user": 5}, "user", "user must be a string."),
        ({"instructions": "a\x00b"}, "instructions", "NUL"),
        ({"previous_response_id": ["resp_1"]}, "previous_response_id", "must be a string"),
        (
            {"frequency_penalty": 0.5},
            "frequency_penalty",
            "Unknown parameter: 'frequency_penalty'.",
        ),
        ({"truncation": "none"}, "truncation", 'truncation must be "auto" or "disabled".'),
        ({"truncation": True}, "truncation", "must be a string"),
        ({"include": "reasoning.encrypted_content"}, "include", "include must be a list."),
        ({"include": ["file_search_call.results", "everything"]}, "include", "include[1] must"),
        ({"include": [None]}, "include", "include[0] must not be null."),
        ({"input": [5]}, "input", "input[0] must be an object (an input item)."),
        ({"input": [{"role": "tool", "content": "x"}]}, "input", "input[0].role must be one of"),
        ({"input": [{"type": "computer_call_output"}]}, "input", "'computer_call_output'"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": "a\x00"}]}]},
            "input",
            "input[0].content[0].text must not contain NUL characters.",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input",
            "input[0].content[0]: parts of type 'input_file' are not supported here",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": 5}]},
            "input",
            "input[0].output must be a string or a list of input_text parts.",
        ),
        ({"input": {"role": "user"}}, "input", "must be a string or a non-empty list"),
        (
            {
                "input": [
                    {"role": "user", "content": "hi"},
                    {"type": "function_call", "name": "f", "arguments": "{}"},
                    {"role": "assistant", "content": 5},
                    {"type": "function_call_output", "call_id": "c", "output": 5},
                ]
            },
            "input",
            "input[1].call_id is required.",
        ),
    ],
)
def test_each_wrong_type_and_value_is_a_400_naming_the_field(client, ada, fields, param, says):
    response = respond(client, ada, **({"input": "hi"} | fields))
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert says in error["message"]
    assert client.get("/api/ai_chat/history", headers=ada).json == []


@pytest.mark.parametrize("body", [b"[1, 2]", b'"hi"', b"null"])
def test_a_responses_body_that_is_not_an_object_is_a_400_on_body(client, ada, body):
    response = client.post("/v1/responses", headers=ada, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"]["param"] == "body"


def test_include_and_truncation_are_accepted_and_truncation_echoed(client, ada):
    assert respond(client, ada, input="hi").json["truncation"] == "disabled"
    for truncation in ("auto", "disabled"):
        response = respond(client, ada, input="hi", truncation=truncation)
        assert response.status_code == 200, response.json
        assert response.json["truncation"] == truncation
    every = [
        "code_interpreter_call.outputs",
        "computer_call_output.output.image_url",
        "file_search_call.results",
        "message.input_image.image_url",
        "message.output_text.logprobs",
        "reasoning.encrypted_content",
        "web_search_call.action.sources",
        "web_search_call.results",
    ]
    for include in ([], every, None):
        response = respond(client, ada, input="hi", include=include)
        assert response.status_code == 200, response.json
        assert response.json["output"][0]["content"][0]["text"] == "Echo: hi"
