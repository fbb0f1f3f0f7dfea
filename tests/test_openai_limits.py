"""/v1 under hostile input: message floods, messages OpenAI itself refuses, odd session headers;
and what a maximal request costs the other users of the server."""

import threading

import openai
import pytest
import requests
from sqlalchemy import func, select

from polygenix.extensions import db
from polygenix.models import ChatSession, Message
from tests.gunicorn_server import gunicorn, register_over_http
from tests.helpers import counted_statements, saved, warm_up
from tests.openai_sdk import openai_sdk

COMPLETIONS = "/v1/chat/completions"


def complete(client, bearer, messages, model="echo", headers=None, **fields):
    return client.post(
        COMPLETIONS,
        headers=bearer | (headers or {}),
        json={"model": model, "messages": messages} | fields,
    )


def conversation(turns: int, last: str = "and now?") -> list[dict]:
    """`turns` earlier question/answer pairs, then the user's new message."""
    messages = []
    for n in range(turns):
        messages += [
            {"role": "user", "content": f"q{n}"},
            {"role": "assistant", "content": f"a{n}"},
        ]
    return messages + [{"role": "user", "content": last}]


def counts(app) -> tuple[int, int]:
    with app.app_context():
        return (
            db.session.scalar(select(func.count(ChatSession.id))),
            db.session.scalar(select(func.count(Message.id))),
        )


def assert_openai_400(response, param="messages", says=None):
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    if says is not None:
        assert says in error["message"]
    return error


def test_more_messages_than_v1_max_messages_is_a_400_and_stores_nothing(make_app, auth):
    app = make_app({"V1_MAX_MESSAGES": 9})
    client = app.test_client()
    headers = auth.register(client=client)
    assert_openai_400(complete(client, headers, conversation(5)), says="at most 9 messages, not 11")
    # 56,000 bare user messages (the flood that held SQLite's write lock for a minute).
    flood = [{"role": "user"}] * 56_000
    assert_openai_400(complete(client, headers, flood), says="at most 9")
    assert counts(app) == (0, 0)
    response = complete(client, headers, conversation(4))
    assert response.status_code == 200
    assert counts(app) == (1, 10)


def test_a_new_conversation_is_stored_in_the_same_statements_whatever_its_length(app, auth):
    """Its earlier messages go in one INSERT (and one UPDATE pairing replies with questions),
    not one INSERT each; each reply still answers the question before it."""
    client = app.test_client()
    headers = auth.register(client=client)
    warm_up(client, headers)
    statements = []
    for turns in (2, 200):
        with counted_statements(app) as ran:
            response = complete(client, headers, conversation(turns, f"last of {turns}"))
        assert response.status_code == 200
        statements.append(len(ran))
    assert statements[0] == statements[1]
    number = int(response.headers["X-PolyGenix-Session"])
    session = client.get(f"/api/ai_chat/{number}", headers=headers).json
    contents = [m["content"] for m in session["messages"]]
    assert contents == [m["content"] for m in conversation(200, "last of 200")] + [
        "Echo: last of 200"
    ]
    with app.app_context():
        rows = db.session.execute(
            select(Message.id, Message.is_bot, Message.reply_to_id)
            .join(ChatSession)
            .where(ChatSession.number == number)
            .order_by(Message.id)
        ).all()
    for before, row in zip(rows, rows[1:], strict=False):
        assert row.reply_to_id == (before.id if row.is_bot else None)
    # Context for a native turn that continues it pairs up as stored.
    assert (
        client.post(
            "/api/ai_chat/request",
            headers=headers,
            json={"content": "native", "model": "echo", "session_id": number},
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("message", "says"),
    [
        ({"role": ["user"], "content": "hi"}, "role must be one of"),
        ({"role": {"user": 1}, "content": "hi"}, "role must be one of"),
        ({"role": 7, "content": "hi"}, "role must be one of"),
        ({"role": "function", "content": "hi"}, "role must be one of"),
        ({"role": "tool", "content": "hi"}, "tool_call_id must be the id of a tool call"),
        ({"role": "user"}, "content is required"),
        ({"role": "user", "content": None}, "content is required"),
        ({"role": "system", "content": None}, "content is required"),
        ({"role": "assistant", "content": None}, "content is required"),
        ({"role": "user", "content": []}, "must not be an empty list"),
        (
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function"}]},
            "function must be an object (name, arguments)",
        ),
    ],
)
def test_messages_openai_refuses_are_400s_never_500s(client, ada, message, says):
    """As OpenAI: a role that is not one of its names (a list or an object included), a content
    null or missing (OpenAI allows it only beside tool calls, which are not supported here), an
    empty list of parts."""
    messages = [message, {"role": "user", "content": "hello"}]
    assert_openai_400(complete(client, ada, messages), says=says)
    last = [{"role": "user", "content": "first"}, message]
    assert_openai_400(complete(client, ada, last))


def test_an_empty_earlier_message_is_taken_as_openai_takes_it(client, ada):
    messages = [
        {"role": "user", "content": ""},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "now something"},
    ]
    assert complete(client, ada, messages).status_code == 200
    blank_last = [{"role": "user", "content": "  "}]
    assert_openai_400(complete(client, ada, blank_last), says="must not be blank")


@pytest.mark.parametrize(
    "number",
    # Headers reach the app decoded as Latin-1: ², ³ and ¹ as themselves (str.isdigit() takes
    # them, int() does not: a 500), other digits as the Latin-1 reading of their UTF-8 bytes.
    ["²", "1²", "³", "¹", *(d.encode().decode("latin-1") for d in ("١٢", "１２", "৪")), "-1", "+1"]
    + ["1e3", "0x1", "1_000", "12345678901", "0"],
)
def test_a_session_header_that_is_not_ascii_digits_is_a_400(client, ada, number):
    response = complete(
        client, ada, [{"role": "user", "content": "hi"}], headers={"X-PolyGenix-Session": number}
    )
    assert_openai_400(response, param="X-PolyGenix-Session")
    assert counts(client.application) == (0, 0)


# --- a maximal request and the other users ---------------------------------------------------


@pytest.mark.slow
def test_other_users_chat_unhindered_while_maximal_requests_are_stored(tmp_path):
    """Through two gunicorn workers: while one user sends the largest conversations /v1 allows
    (V1_MAX_MESSAGES messages filling CONTEXT_MAX_CHARS), each stored as a new session, every
    chat of another user is answered 200."""
    settings = {"V1_MAX_MESSAGES": "500", "CONTEXT_MAX_CHARS": "200000"}
    with gunicorn(tmp_path, settings) as (base, _):
        flooder = register_over_http(base, "flood@example.com")
        other = register_over_http(base, "other@example.com")
        per_message = 200_000 // 500 - 1
        statuses: dict[str, list[int]] = {"flood": [], "chat": []}
        done = threading.Event()

        def flood():
            for round_ in range(6):
                messages = [
                    {
                        "role": "assistant" if n % 2 == 0 else "user",
                        "content": f"{round_}" * per_message,
                    }
                    for n in range(500)
                ]
                response = requests.post(
                    base + COMPLETIONS,
                    headers=flooder,
                    json={"model": "echo", "messages": messages},
                    timeout=60,
                )
                statuses["flood"].append(response.status_code)
            done.set()

        thread = threading.Thread(target=flood)
        thread.start()
        while not done.is_set() or not statuses["chat"]:
            response = requests.post(
                base + "/api/ai_chat/request",
                headers=other,
                json={"content": "still here?", "model": "echo", "session_id": 1},
                timeout=60,
            )
            statuses["chat"].append(response.status_code)
        thread.join(timeout=120)
    assert statuses["flood"] == [200] * 6
    assert set(statuses["chat"]) == {200}


# --- the official SDK's retries ------------------------------------------------------------


def test_a_key_reused_for_another_body_is_not_a_retry(provider_app, client, ada, fake):
    """A failed call's Idempotency-Key sent again with another body is another call: a new
    session, the failed question left as it was (not superseded by words it did not ask)."""
    fake.reply(500, {"error": {"message": "down"}}, times=3)
    keyed = {"Idempotency-Key": "call-1"}
    api = provider_app.test_client()
    failed = complete(api, ada, [{"role": "user", "content": "one"}], "openai", keyed)
    assert failed.status_code == 502
    answer = complete(api, ada, [{"role": "user", "content": "two"}], "openai", keyed)
    assert answer.status_code == 200
    assert sorted(saved(client, ada, include_superseded="true")) == [
        (1, [("one", True)]),
        (2, [("two", False), ("Hello from gpt-4.1-mini", False)]),
    ]


@pytest.fixture
def sdk_with_retries(server, key):
    """The official SDK as applications use it: its default two retries (quick ones)."""
    return openai_sdk(server, key, max_retries=2)


def test_a_5xx_polygenix_already_retried_is_not_retried_by_the_sdk(
    sdk_with_retries, fake, client, ada
):
    """One SDK call against a provider answering 500: PolyGenix tries it 3 times and answers
    502 with x-should-retry: false, so the SDK stops there: 3 provider calls (not 9), one
    failed session (not 3)."""
    fake.reply(500, {"error": {"message": "down"}}, times=9)
    with pytest.raises(openai.InternalServerError) as raised:
        sdk_with_retries.chat.completions.create(
            model="openai", messages=[{"role": "user", "content": "are you there?"}]
        )
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert len(fake.requests) == 3
    assert [messages for _, messages in saved(client, ada)] == [[("are you there?", True)]]


@pytest.mark.parametrize("idempotency_key", [None, "call-7f3a"])
def test_a_retried_call_reuses_the_session_of_its_failed_attempt(
    sdk_with_retries, fake, client, ada, idempotency_key
):
    """A failure the SDK does retry (the provider's rate limit): each attempt that fails is
    stored, but in the first attempt's session, replacing the attempt before it; so is the one
    that succeeds. One call, one session."""
    limited = {"error": {"message": "slow down", "type": "rate_limit"}}
    fake.reply(429, limited, headers={"retry-after": "0"}, times=6)  # two attempts' worth
    extra = {"extra_headers": {"Idempotency-Key": idempotency_key}} if idempotency_key else {}
    answer = sdk_with_retries.chat.completions.create(
        model="openai", messages=[{"role": "user", "content": "third time lucky"}], **extra
    )
    assert answer.choices[0].message.content == "Hello from gpt-4.1-mini"
    assert len(fake.requests) == 7
    [(number, messages)] = saved(client, ada)
    assert messages == [("third time lucky", False), ("Hello from gpt-4.1-mini", False)]
    [(_, everything)] = saved(client, ada, include_superseded="true")
    assert everything == [("third time lucky", True)] * 2 + messages


def test_a_call_that_fails_on_every_attempt_leaves_one_failed_message(
    sdk_with_retries, fake, client, ada
):
    limited = {"error": {"message": "slow down", "type": "rate_limit"}}
    fake.reply(429, limited, headers={"retry-after": "0"}, times=9)
    with pytest.raises(openai.RateLimitError):
        sdk_with_retries.chat.completions.create(
            model="openai",
            messages=[
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "never answered"},
            ],
        )
    assert [messages for _, messages in saved(client, ada)] == [
        [("q", False), ("a", False), ("never answered", True)]
    ]


def test_different_calls_with_the_same_words_stay_apart(sdk_with_retries, fake, client, ada):
    """Only a retry (the SDK's attempt count above 0, or a key seen before) is matched."""
    for _ in range(2):
        fake.reply(400, {"error": {"message": "no"}})
        with pytest.raises(openai.InternalServerError):  # the provider refused: a 502
            sdk_with_retries.chat.completions.create(
                model="openai", messages=[{"role": "user", "content": "same words"}]
            )
    assert len(saved(client, ada)) == 2


def test_a_native_5xx_after_polygenix_retries_says_not_to_retry(provider_app, ada, fake):
    fake.reply(503, {"error": {"message": "overloaded"}}, times=3)
    response = provider_app.test_client().post(
        "/api/ai_chat/request", headers=ada, json={"content": "hello", "model": "openai"}
    )
    assert response.status_code == 502 and response.headers["x-should-retry"] == "false"
    assert len(fake.requests) == 3


# --- the request schema's refusals -----------------------------------------------------------

WHOLE = "must be a whole number from 1 to 2147483647."


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        # Numbers are JSON numbers: not strings (not even of digits, Arabic-Indic ones
        # included), not booleans (Python's True is an int), in range.
        ({"temperature": "0.5"}, "temperature", "temperature must be a number from 0 to 2."),
        ({"temperature": True}, "temperature", "from 0 to 2"),
        ({"temperature": -0.1}, "temperature", "from 0 to 2"),
        ({"temperature": 2.01}, "temperature", "from 0 to 2"),
        ({"temperature": [1]}, "temperature", "from 0 to 2"),
        ({"top_p": 1.5}, "top_p", "top_p must be a number from 0 to 1."),
        ({"top_p": False}, "top_p", "from 0 to 1"),
        ({"max_tokens": 0}, "max_tokens", f"max_tokens {WHOLE}"),
        ({"max_tokens": 2**31}, "max_tokens", WHOLE),
        ({"max_tokens": 10.0}, "max_tokens", WHOLE),
        ({"max_tokens": True}, "max_tokens", WHOLE),
        ({"max_tokens": "12"}, "max_tokens", WHOLE),
        ({"max_tokens": "١٢"}, "max_tokens", WHOLE),
        ({"max_completion_tokens": -1}, "max_completion_tokens", WHOLE),
        ({"seed": 2**63}, "seed", "seed must be a whole number from"),
        ({"seed": 1.5}, "seed", "whole number"),
        ({"seed": True}, "seed", "whole number"),
        ({"n": 2}, "n", "n=1"),
        ({"n": True}, "n", "n=1"),
        ({"n": "1"}, "n", "n=1"),
        # Flags are true or false.
        ({"stream": "yes"}, "stream", "stream must be true or false."),
        ({"stream": 1}, "stream", "true or false"),
        ({"store": 0}, "store", "store must be true or false."),
        ({"parallel_tool_calls": "no"}, "parallel_tool_calls", "true or false"),
        ({"stream_options": "usage"}, "stream_options", "stream_options must be an object."),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options", "true or false"),
        # Strings and lists of them.
        ({"stop": 5}, "stop", "stop must be a string or a list of 1 to 4 strings."),
        ({"stop": ["a"] * 5}, "stop", "1 to 4"),
        ({"stop": [""]}, "stop", "1 to 4"),
        ({"stop": ["a\x00"]}, "stop", "1 to 4"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort", "reasoning_effort must be one of"),
        ({"model": ""}, "model", "model must be a model name (1 to 200 characters)."),
        ({"model": "   "}, "model", "1 to 200"),
        ({"model": "x" * 201}, "model", "1 to 200"),
        ({"model": 5}, "model", "1 to 200"),
        ({"model": None}, "model", "1 to 200"),
        ({"model": "ec\x00ho"}, "model", "model must not contain NUL characters."),
        ({"audio": {"voice": "alloy"}}, "audio", "audio is not supported by this server."),
        ({"logprobs": True}, "logprobs", "logprobs are not supported by this server."),
    ],
)
def test_each_wrong_type_and_value_is_a_400_naming_the_field(client, ada, fields, param, says):
    response = complete(client, ada, [{"role": "user", "content": "hi"}], **fields)
    assert_openai_400(response, param=param, says=says)
    assert counts(client.application) == (0, 0)


@pytest.mark.parametrize(
    ("messages", "says"),
    [
        (None, "messages must be a non-empty list."),
        ({"role": "user", "content": "hi"}, "messages must be a non-empty list."),
        ([], "messages must be a non-empty list."),
        (["hi"], "messages[0].role must be one of"),
        ([{"role": "user", "content": 5}], "messages[0].content must be a string or a list"),
        ([{"role": "user", "content": "a\x00b"}], "messages[0].content must not contain NUL"),
        (
            [{"role": "user", "content": [{"type": "text"}]}],
            "messages[0].content[0].text is required",
        ),
        (
            [{"role": "user", "content": [{"type": "text", "text": 5}]}],
            "messages[0].content[0].text must be a string.",
        ),
        (
            [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
            "messages[0].content[0]: only text and image_url parts are supported, not "
            "'input_audio'.",
        ),
        (
            [
                {"role": "system", "content": [{"type": "image_url", "image_url": "x"}]},
                {"role": "user", "content": "hi"},
            ],
            "messages[0].content[0]: only text parts are supported, not 'image_url'.",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"detail": "low"}}]}],
            "messages[0].content[0].image_url.url is required",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://a.b/c", "detail": "x"}}
                    ],
                }
            ],
            "messages[0].content[0].image_url.detail must be one of",
        ),
        (
            [
                {"role": "assistant", "content": "", "tool_calls": "call"},
                {"role": "user", "content": "hi"},
            ],
            "messages[0].tool_calls must be a non-empty list of calls.",
        ),
        (
            [
                {"role": "assistant", "content": "", "tool_calls": []},
                {"role": "user", "content": "hi"},
            ],
            "messages[0].tool_calls must be a non-empty list of calls.",
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": 7, "content": "x"},
            ],
            "messages[1].tool_call_id must be a string.",
        ),
        # Messages of each role are loaded together: the error told is still the first
        # message's, and within it the first field's.
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant"},
                {"role": "user", "content": 5},
                {"role": "system", "content": None},
            ],
            "messages[1].content is required: a string or a list of parts.",
        ),
        (
            [
                {"role": "system", "content": 5},
                {"role": "user", "content": "a\x00"},
                {"role": "bogus"},
            ],
            "messages[0].content must be a string or a list of parts.",
        ),
        (
            [{"role": "user", "content": "hi"}, 7, {"role": "assistant", "content": 5}],
            "messages[1].role must be one of system, developer, user, assistant, tool.",
        ),
        (
            [
                {"role": "assistant", "function_call": {"name": "f"}},
                {"role": "user", "content": "hi"},
            ],
            "messages[0].function_call is deprecated: use tool_calls.",
        ),
    ],
)
def test_each_wrong_message_is_a_400_on_messages(client, ada, messages, says):
    response = client.post(COMPLETIONS, headers=ada, json={"model": "echo", "messages": messages})
    assert_openai_400(response, says=says)
    assert counts(client.application) == (0, 0)


@pytest.mark.parametrize("body", [b"[1, 2]", b'"hi"', b"5", b"null"])
def test_a_body_that_is_not_an_object_is_a_400_on_body(client, ada, body):
    response = client.post(COMPLETIONS, headers=ada, data=body, content_type="application/json")
    assert_openai_400(response, param="body", says="The body must be a JSON object.")


def test_fields_openai_defines_and_polygenix_ignores_are_accepted(client, ada):
    ignored = {
        "frequency_penalty": 0.5,
        "presence_penalty": 0,
        "logit_bias": {"50256": -100},
        "user": "someone",
        "metadata": {"k": "v"},
        "service_tier": "auto",
        "logprobs": False,
        "n": 1,
        "stream_options": None,
        "functions": None,
    }
    response = complete(client, ada, [{"role": "user", "content": "hi"}], **ignored)
    assert response.status_code == 200, response.json
