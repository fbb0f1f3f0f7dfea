"""The OpenAI-compatible API under /v1, through the official `openai` SDK pointed at a real HTTP
server of the app: completions plain and streamed, models, errors raising the SDK's own
exception classes, and conversations threading themselves into saved sessions."""

import openai
import pytest
import requests

from tests.fake_provider import openai_stream
from tests.helpers import bearer, serving, sessions
from tests.openai_sdk import openai_sdk


def test_a_completion_is_what_the_sdk_expects_and_is_saved(sdk, client, ada, fake):
    raw = sdk.chat.completions.with_raw_response.create(
        model="openai", messages=[{"role": "user", "content": "What is 2+2?"}]
    )
    completion = raw.parse()
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.model == "openai/gpt-4.1-mini"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello from gpt-4.1-mini"
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 7, 18)
    number = int(raw.headers["X-PolyGenix-Session"])
    assert sessions(client, ada) == [(number, ["What is 2+2?", "Hello from gpt-4.1-mini"])]


def test_the_provider_gets_exactly_the_clients_messages(sdk, fake):
    sdk.chat.completions.create(
        model="openai",
        messages=[
            {"role": "developer", "content": "Answer in French."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "you"}],
            },
        ],
        temperature=0.4,
        max_completion_tokens=50,
        seed=7,
    )
    body = fake.requests[-1].body
    assert body["messages"] == [
        {"role": "system", "content": "Answer in French."},  # no SYSTEM_PROMPT added
        {"role": "user", "content": "Hello, you"},
    ]
    assert (body["temperature"], body["max_completion_tokens"], body["seed"]) == (0.4, 50, 7)


def test_a_streamed_completion_with_usage(sdk, fake):
    chunks = list(
        sdk.chat.completions.create(
            model="openai",
            messages=[{"role": "user", "content": "Stream it"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the stream"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 18
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"


def test_reasoning_comes_as_reasoning_content(sdk, fake):
    fake.reply(
        body={
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "deepseek-reasoner",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "9.8",
                        "reasoning_content": "compare",
                    },
                    "finish_reason": "stop",
                }
            ],
        }
    )
    completion = sdk.chat.completions.create(
        model="deepseek r1", messages=[{"role": "user", "content": "9.11 or 9.8?"}]
    )
    assert completion.choices[0].message.content == "9.8"
    assert completion.choices[0].message.model_extra["reasoning_content"] == "compare"
    assert completion.model == "deepseek/deepseek-reasoner"


def test_a_provider_failure_mid_stream_raises_in_the_sdk(sdk, fake, client, ada):
    fake.reply(
        chunks=openai_stream(["part"], "m")[:2] + [b'data: {"error": {"message": "boom"}}\n\n']
    )
    stream = sdk.chat.completions.create(
        model="openai", messages=[{"role": "user", "content": "go"}], stream=True
    )
    with pytest.raises(openai.APIError, match="boom"):
        list(stream)
    [(_, [question, reply])] = sessions(client, ada)
    assert question == "go" and reply == "part"


def test_models_are_listed_in_openais_shape(sdk):
    listed = {m.id: m for m in sdk.models.list()}
    assert listed["openai/gpt-4.1-mini"].object == "model"
    assert listed["openai/gpt-4.1-mini"].owned_by == "openai"
    assert "claude" in listed and "deepseek r1" in listed  # the aliases, usable now
    assert sdk.models.retrieve("openai/gpt-4.1-mini").id == "openai/gpt-4.1-mini"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("no-such/model")


@pytest.mark.parametrize(
    ("call", "error", "param"),
    [
        (dict(model="nope"), openai.NotFoundError, "model"),
        (
            dict(model="echo", tools=[{"type": "function", "function": {"name": "f g"}}]),
            openai.BadRequestError,
            "tools",
        ),
        (dict(model="echo", n=2), openai.BadRequestError, "n"),
        (dict(model="echo", logprobs=True), openai.BadRequestError, "logprobs"),
        (
            dict(model="echo", response_format={"type": "xml"}),
            openai.BadRequestError,
            "response_format",
        ),
        (
            dict(model="echo", functions=[{"name": "f"}]),
            openai.BadRequestError,
            "functions",
        ),
        (dict(model="echo", temperature=3), openai.BadRequestError, "temperature"),
        (dict(model="echo", max_tokens=0), openai.BadRequestError, "max_tokens"),
    ],
)
def test_errors_raise_the_sdks_own_exceptions(sdk, call, error, param):
    with pytest.raises(error) as raised:
        sdk.chat.completions.create(messages=[{"role": "user", "content": "hi"}], **call)
    assert raised.value.body["param"] == param
    assert raised.value.body["type"] == "invalid_request_error"


def test_an_image_part_and_an_oversized_conversation_are_400s_on_messages(
    make_app, provider_config, auth
):
    app = make_app(provider_config | {"CONTEXT_MAX_CHARS": 50})
    client = app.test_client()
    headers = auth.register(client=client)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    for messages in (
        [{"role": "user", "content": [image]}],
        [{"role": "user", "content": "x" * 60}],
        [{"role": "assistant", "content": "only me"}],
    ):
        response = client.post(
            "/v1/chat/completions", headers=headers, json={"model": "echo", "messages": messages}
        )
        assert response.status_code == 400
        assert response.json["error"]["param"] == "messages"


def test_bad_and_revoked_keys_are_authentication_errors(server, client, ada, key):
    with pytest.raises(openai.AuthenticationError) as raised:
        openai_sdk(server, "pgx_nothing").models.list()
    assert raised.value.body["code"] == "invalid_api_key"
    key_id = client.get("/api/keys", headers=ada).json[0]["id"]
    client.delete(f"/api/keys/{key_id}", headers=ada)
    with pytest.raises(openai.AuthenticationError):
        openai_sdk(server, key).models.list()


def test_an_access_token_works_as_the_key_too(server, auth):
    token = auth.tokens("carol@example.com")["access_token"]
    sdk = openai_sdk(server, token)
    assert sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])


def test_a_rate_limit_is_the_sdks_rate_limit_error(make_app, provider_config, auth):
    app = make_app(provider_config | {"CHAT_RATE_LIMIT": "1/minute"})
    token = auth.tokens(client=app.test_client())["access_token"]
    with serving(app) as base:
        sdk = openai_sdk(base, token)
        sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "one"}])
        with pytest.raises(openai.RateLimitError) as raised:
            sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "two"}])
        assert raised.value.response.headers["Retry-After"]
        assert raised.value.body["code"] == "rate_limit_exceeded"


def test_a_provider_failure_is_an_api_error_and_keeps_the_message(sdk, fake, client, ada):
    fake.reply(500, {"error": {"message": "down"}}, times=3)
    with pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(model="openai", messages=[{"role": "user", "content": "lost?"}])
    [(_, [question])] = sessions(client, ada)
    assert question == "lost?"


def test_every_v1_error_is_in_openais_shape(server, key):
    for method, path in (
        ("GET", "/v1/nothing"),
        ("DELETE", "/v1/models"),
        ("POST", "/v1/chat/completions"),
    ):
        response = requests.request(method, server + path, headers=bearer(key), timeout=5)
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    bad_json = requests.post(
        server + "/v1/chat/completions",
        headers=bearer(key) | {"Content-Type": "application/json"},
        data=b'{"model": ',
        timeout=5,
    )
    assert (
        bad_json.status_code == 400 and bad_json.json()["error"]["type"] == "invalid_request_error"
    )


# --- conversations thread themselves into sessions ------------------------------------------


def test_a_resent_conversation_is_one_session_and_another_is_another(sdk, client, ada):
    conversation = [{"role": "system", "content": "Be kind."}]
    for question in ("first", "second", "third"):
        conversation.append({"role": "user", "content": question})
        answer = sdk.chat.completions.create(model="echo", messages=conversation)
        conversation.append({"role": "assistant", "content": answer.choices[0].message.content})
    other = [{"role": "user", "content": "elsewhere"}]
    sdk.chat.completions.create(model="echo", messages=other)
    saved = sessions(client, ada)
    assert [len(messages) for _, messages in saved] == [2, 6]
    assert saved[1][1] == ["first", "Echo: first", "second", "Echo: second", "third", "Echo: third"]


def test_a_conversation_never_seen_starts_a_session_with_its_earlier_messages(sdk, client, ada):
    sdk.chat.completions.create(
        model="echo",
        messages=[
            {"role": "user", "content": "said elsewhere"},
            {"role": "assistant", "content": "answered elsewhere"},
            {"role": "user", "content": "now here"},
        ],
    )
    [(_, messages)] = sessions(client, ada)
    assert messages == ["said elsewhere", "answered elsewhere", "now here", "Echo: now here"]


def test_store_false_saves_nothing(sdk, client, ada):
    raw = sdk.chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": "off the record"}], store=False
    )
    assert raw.parse().choices[0].message.content == "Echo: off the record"
    assert "X-PolyGenix-Session" not in raw.headers
    streamed = list(
        sdk.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "also off"}],
            store=False,
            stream=True,
        )
    )
    assert streamed[-1].choices[0].finish_reason == "stop"
    assert sessions(client, ada) == []


def test_the_session_header_targets_a_session(sdk, client, ada):
    sdk.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "into 42"}],
        extra_headers={"X-PolyGenix-Session": "42"},
    )
    sdk.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "unrelated text, same session"}],
        extra_headers={"X-PolyGenix-Session": "42"},
    )
    assert sessions(client, ada) == [
        (
            42,
            [
                "into 42",
                "Echo: into 42",
                "unrelated text, same session",
                "Echo: unrelated text, same session",
            ],
        )
    ]
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"X-PolyGenix-Session": "zero"},
        )


def test_a_native_turn_keeps_the_session_threadable(sdk, client, ada):
    """A turn added through the native API extends the transcript an OpenAI client resends."""
    first = sdk.chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": "one"}]
    )
    number = int(first.headers["X-PolyGenix-Session"])
    client.post(
        "/api/ai_chat/request",
        headers=ada,
        json={"content": "two", "model": "echo", "session_id": number},
    )
    sdk.chat.completions.create(
        model="echo",
        messages=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "Echo: one"},
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": "Echo: two"},
            {"role": "user", "content": "three"},
        ],
    )
    assert [n for n, _ in sessions(client, ada)] == [number]


def test_keep_alives_while_the_model_is_silent(make_app, provider_config, auth, fake):
    app = make_app(provider_config | {"STREAM_KEEPALIVE_SECONDS": 0.1})
    client = app.test_client()
    headers = auth.register(client=client)
    fake.reply(chunks=openai_stream(["slow", " reply"], "m"), gap=0.3)
    body = client.post(
        "/v1/chat/completions",
        headers=headers,
        json={"model": "openai", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    ).get_data(as_text=True)
    assert ": keep-alive" in body and body.rstrip().endswith("data: [DONE]")
