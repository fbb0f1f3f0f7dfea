import json
import threading

import pytest
from sqlalchemy import func, select

from polygenix.extensions import db
from polygenix.models import ChatSession, Message, UsageDaily, User
from tests.helpers import ask, assert_envelope

REQUEST = "/api/ai_chat/request"


def test_home_greets_the_caller(client, ada):
    assert client.get("/api/ai_chat/home", headers=ada).json == {
        "data": {
            "message": "Welcome to your Custom AI Application PolyGenix - Ada",
            "submsg": "Select the model to get started",
        }
    }


def test_request_returns_the_echo_reply_as_message_response(client, ada):
    response = ask(client, ada, "whats the time now! ", session_id=123456, chat_id=None)
    assert response.status_code == 200
    body = response.json
    assert body["content"] == "Echo: whats the time now! "
    assert body["is_bot"] is True
    assert body["session_id"] == 123456
    assert body["model"] == "echo/echo"
    assert isinstance(body["id"], int)
    assert body["timestamp"].endswith("+00:00")


def test_null_or_absent_session_id_starts_the_next_free_number(client, ada):
    assert ask(client, ada, session_id=None).json["session_id"] == 1
    assert ask(client, ada).json["session_id"] == 2
    assert ask(client, ada, session_id=54321).json["session_id"] == 54321
    assert ask(client, ada, session_id=None).json["session_id"] == 54322


def test_numbers_belong_to_their_user(client, ada, bob):
    ask(client, ada, "ada's secret", session_id=12345)
    response = ask(client, bob, "bob's own", session_id=12345)
    assert response.json["session_id"] == 12345
    bob_history = client.get("/api/ai_chat/history", headers=bob).json
    assert [m["content"] for m in bob_history[0]["messages"]] == ["bob's own", "Echo: bob's own"]
    ada_session = client.get("/api/ai_chat/12345", headers=ada).json
    assert ada_session["messages"][0]["content"] == "ada's secret"


def test_a_deleted_sessions_number_is_not_handed_out_again(client, ada):
    assert [ask(client, ada).json["session_id"] for _ in range(3)] == [1, 2, 3]
    assert client.delete("/api/ai_chat/3", headers=ada).status_code == 200
    assert ask(client, ada).json["session_id"] == 4
    assert ask(client, ada, session_id=3).json["session_id"] == 3  # asked for: it is the user's


def test_the_counter_catches_up_with_sessions_made_without_it(client, ada, app):
    """Sessions written straight to the database (a restored backup, a bulk import) leave the
    counter behind: the next new session finds the highest number and goes past it."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "ada@example.com"))
        for number in range(1, 31):
            db.session.add(ChatSession(user_id=user.id, number=number, title="imported"))
        db.session.commit()
    assert ask(client, ada).json["session_id"] == 31
    assert ask(client, ada).json["session_id"] == 32


def test_next_number_falls_back_to_the_lowest_gap_at_the_top(client, ada):
    top = 2_147_483_647
    assert ask(client, ada, session_id=top).json["session_id"] == top
    assert ask(client, ada).json["session_id"] == 1
    assert ask(client, ada).json["session_id"] == 2


def test_continuing_a_session_keeps_its_title_and_messages_in_order(client, ada):
    ask(client, ada, "first question", session_id=7)
    ask(client, ada, "second question", session_id=7)
    session = client.get("/api/ai_chat/7", headers=ada).json
    assert session["title"] == "first question"
    assert [(m["is_bot"], m["content"]) for m in session["messages"]] == [
        (False, "first question"),
        (True, "Echo: first question"),
        (False, "second question"),
        (True, "Echo: second question"),
    ]
    assert all(m["session_id"] == 7 for m in session["messages"])


def test_title_is_cut_at_a_word_boundary(client, ada):
    text = "Please explain   the difference between threads and processes in Python, with examples"
    ask(client, ada, text, session_id=1)
    title = client.get("/api/ai_chat/1", headers=ada).json["title"]
    assert len(title) <= 60
    assert title == "Please explain the difference between threads and…"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": "", "model": "echo"}, "content"),
        ({"content": " \n\t ", "model": "echo"}, "content"),
        ({"model": "echo"}, "content"),
        ({"content": "hi"}, "model"),
        ({"content": "hi", "model": ""}, "model"),
        ({"content": "hi", "model": "echo", "session_id": 0}, "session_id"),
        ({"content": "hi", "model": "echo", "session_id": -3}, "session_id"),
        ({"content": "hi", "model": "echo", "session_id": 2_147_483_648}, "session_id"),
        ({"content": "hi", "model": "echo", "session_id": "12"}, "session_id"),
        ({"content": "hi", "model": "echo", "session_id": 1.5}, "session_id"),
        ({"content": "hi", "model": "echo", "temperature": 2.5}, "temperature"),
        ({"content": 5, "model": "echo"}, "content"),
        ({"content": "nul \u0000 inside", "model": "echo"}, "content"),
    ],
)
def test_bad_requests_are_422_and_store_nothing(client, ada, app, body, field):
    response = client.post(REQUEST, headers=ada, json=body)
    assert field in assert_envelope(response, 422)["errors"]["json"]
    with app.app_context():
        assert db.session.scalar(select(func.count(Message.id))) == 0


def test_content_limit_is_configurable(client, ada, app):
    app.config["MAX_MESSAGE_CHARS"] = 10
    assert ask(client, ada, "x" * 10).status_code == 200
    body = assert_envelope(ask(client, ada, "x" * 11), 422)
    assert "at most 10" in body["message"]


def test_default_content_limit_is_32000_characters(client, ada):
    assert ask(client, ada, "é" * 32_000).status_code == 200
    assert_envelope(ask(client, ada, "é" * 32_001), 422)


def test_unknown_model_lists_available_ones(client, ada):
    body = assert_envelope(ask(client, ada, model="gpt-17"), 422)
    assert "gpt-17" in body["message"] and "echo/echo" in body["message"]
    assert "model" in body["errors"]["json"]


@pytest.mark.parametrize("model", ["echo", "ECHO", "Echo/anything", "echo/some/deep-name"])
def test_echo_model_names(client, ada, model):
    response = ask(client, ada, model=model)
    assert response.status_code == 200
    suffix = model.partition("/")[2] or "echo"
    assert response.json["model"] == f"echo/{suffix}"


def test_models_lists_echo_as_usable(client, ada):
    models = client.get("/api/ai_chat/models", headers=ada).json
    assert {
        "id": "echo/echo",
        "provider": "echo",
        "model": "echo",
        "default": True,
        "available": True,
        "unavailable_reason": None,
    } in models


@pytest.fixture
def sent(fake):
    """What each call to the fake provider (as `openai-compatible`) was sent."""
    return lambda: [r.body["messages"] for r in fake.requests]


REPLY = "Hello from local-model"  # the fake provider's answer as `openai-compatible`


def test_provider_receives_earlier_turns_then_the_new_message(provider_app, auth, sent):
    client = provider_app.test_client()
    ada = auth.register("ada@example.com", "Ada", client=client)
    ask(client, ada, "one", model="openai-compatible", session_id=3)
    ask(client, ada, "two", model="openai-compatible", session_id=3)
    ask(client, ada, "elsewhere", model="openai-compatible", session_id=4)
    system = {"role": "system", "content": provider_app.config["SYSTEM_PROMPT"]}
    calls = sent()
    assert calls[0] == [system, {"role": "user", "content": "one"}]
    assert calls[1] == [
        system,
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": REPLY},
        {"role": "user", "content": "two"},
    ]
    assert calls[2] == [system, {"role": "user", "content": "elsewhere"}]


def test_a_new_sessions_first_turn_leaves_its_model_unset(provider_app, auth):
    """A session's `model` is one a request for it named, never the name the provider answered
    with (its usage's): a first turn's store, whichever statements write it, sets none."""
    client = provider_app.test_client()
    ada = auth.register("ada@example.com", "Ada", client=client)
    for content in ("one", "two"):
        assert ask(client, ada, content, model="openai-compatible").status_code == 200
    with provider_app.app_context():
        columns = (ChatSession.number, ChatSession.model, ChatSession.system_prompt)
        sessions = db.session.execute(select(*columns).order_by(ChatSession.number)).all()
        used = db.session.scalars(select(UsageDaily.model)).all()
    assert [tuple(s) for s in sessions] == [(1, None, None), (2, None, None)]
    assert used  # the usage the store wrote beside them named a model


def test_context_keeps_the_newest_turns_within_the_budget(make_app, provider_config, auth, sent):
    # Room for the new message and one earlier turn; no system prompt at all.
    client = make_app(
        provider_config | {"CONTEXT_MAX_CHARS": 120, "SYSTEM_PROMPT": ""}
    ).test_client()
    ada = auth.register(client=client)
    for word in ["alpha", "bravo", "charlie"]:
        ask(client, ada, word * 10, model="openai-compatible", session_id=1)
    ask(client, ada, "last", model="openai-compatible", session_id=1)
    assert [m["content"] for m in sent()[-1]] == ["charlie" * 10, REPLY, "last"]


def test_provider_failure_is_an_envelope_and_keeps_the_users_message(
    provider_app, auth, fake, sent
):
    client = provider_app.test_client()
    ada = auth.register("ada@example.com", "Ada", client=client)
    fake.reply(429, {"error": {"message": "provider is overloaded"}}, {"Retry-After": "7"})
    response = ask(client, ada, "please remember this", model="openai-compatible", session_id=9)
    assert_envelope(response, 429, "overloaded")
    assert response.headers["Retry-After"] == "7"
    session = client.get("/api/ai_chat/9", headers=ada).json
    assert [m["content"] for m in session["messages"]] == ["please remember this"]
    # The unanswered message is left out of the next turn's context; the session goes on.
    assert ask(client, ada, "again", model="openai-compatible", session_id=9).status_code == 200
    assert sent()[-1][1:] == [{"role": "user", "content": "again"}]
    failed = client.get("/api/ai_chat/9", headers=ada).json["messages"][0]
    assert failed["failed"] is True and "overloaded" in failed["error"]


def test_unconfigured_provider_is_503_and_keeps_the_message_flagged(make_app, config, auth):
    """The original web client's default model is Gemini: a message sent to a provider that is
    not configured stays in the session (flagged), so the chat does not vanish on reload."""
    client = make_app(config).test_client()
    ada = auth.register(client=client)
    body = assert_envelope(ask(client, ada, "are you there?", model="gemini"), 503)
    assert "not configured" in body["message"] and "set GEMINI_API_KEY" in body["message"]
    [session] = client.get("/api/ai_chat/history", headers=ada).json
    [message] = session["messages"]
    assert (message["content"], message["failed"]) == ("are you there?", True)
    assert "GEMINI_API_KEY" in message["error"]


def test_an_unknown_model_stores_nothing(client, ada, app):
    assert_envelope(ask(client, ada, model="no-such-provider"), 422, "Unknown model")
    with app.app_context():
        assert db.session.scalar(select(func.count(ChatSession.id))) == 0


def test_history_is_latest_activity_first_with_messages_oldest_first(client, ada, bob):
    ask(client, ada, "first", session_id=10)
    ask(client, ada, "second", session_id=20)
    ask(client, ada, "first again", session_id=10)
    ask(client, bob, "not yours", session_id=30)
    response = client.get("/api/ai_chat/history", headers=ada)
    assert response.status_code == 200
    history = response.json
    assert [s["chat_id"] for s in history] == [10, 20]
    created = client.get("/api/ai_chat/history?order=created", headers=ada).json
    assert [s["chat_id"] for s in created] == [20, 10]
    assert set(history[0]) == {
        "chat_id",
        "title",
        "created_at",
        "updated_at",
        "system_prompt",
        "model",
        "messages",
    }
    assert history[0]["updated_at"] == history[0]["messages"][-1]["timestamp"]
    history = created
    assert [m["content"] for m in history[1]["messages"]] == [
        "first",
        "Echo: first",
        "first again",
        "Echo: first again",
    ]
    assert set(history[1]["messages"][0]) == {
        "id",
        "content",
        "is_bot",
        "session_id",
        "timestamp",
        "model",
        "usage",
        "finish_reason",
        "failed",
        "error",
        "incomplete",
        "reasoning",
        "options",
        "superseded",
        "attachments",
    }
    question, answer = history[1]["messages"][:2]
    assert question["usage"] is None and question["failed"] is False
    assert answer["usage"]["completion_tokens"] == 2  # echo counts words: "Echo:", "first"
    assert answer["finish_reason"] == "stop"


def test_history_pagination(client, ada):
    for number in range(1, 26):
        ask(client, ada, f"message {number}", session_id=number)
    first = client.get("/api/ai_chat/history?page=1", headers=ada)
    assert len(first.json) == 20
    assert json.loads(first.headers["X-Pagination"]) == {
        "total": 25,
        "total_pages": 2,
        "first_page": 1,
        "last_page": 2,
        "page": 1,
        "next_page": 2,
    }
    assert len(client.get("/api/ai_chat/history?page_size=20", headers=ada).json) == 20
    second = client.get("/api/ai_chat/history?page=2&page_size=20", headers=ada)
    assert [s["chat_id"] for s in second.json] == [5, 4, 3, 2, 1]
    small = client.get("/api/ai_chat/history?page=3&page_size=10", headers=ada)
    assert [s["chat_id"] for s in small.json] == [5, 4, 3, 2, 1]
    assert client.get("/api/ai_chat/history?page=9", headers=ada).json == []
    # Pages far past the end are empty, not a database overflow.
    for path in ["history", "sessions"]:
        response = client.get(f"/api/ai_chat/{path}?page={2**64 + 1}", headers=ada)
        assert response.status_code == 200 and response.json == []
    for bad in ["page_size=101", "page_size=0", "page=0", "page=x"]:
        assert_envelope(client.get(f"/api/ai_chat/history?{bad}", headers=ada), 422)


def test_sessions_list_counts_messages(client, ada):
    ask(client, ada, "a", session_id=1)
    ask(client, ada, "b", session_id=1)
    ask(client, ada, "c", session_id=2)
    response = client.get("/api/ai_chat/sessions?page_size=1", headers=ada)
    [only] = response.json
    assert only == {
        "chat_id": 2,
        "title": "c",
        "created_at": only["created_at"],
        "updated_at": only["updated_at"],
        "system_prompt": None,
        "model": None,
        "message_count": 2,
    }
    assert json.loads(response.headers["X-Pagination"])["total"] == 2
    everything = client.get("/api/ai_chat/sessions", headers=ada).json
    assert [(s["chat_id"], s["message_count"]) for s in everything] == [(2, 2), (1, 4)]


def test_rename_session(client, ada, bob):
    ask(client, ada, "hello", session_id=5)
    response = client.patch("/api/ai_chat/5", headers=ada, json={"title": "  Greetings "})
    assert response.status_code == 200
    assert response.json["title"] == "Greetings"
    assert response.json["message_count"] == 2
    assert client.get("/api/ai_chat/5", headers=ada).json["title"] == "Greetings"
    assert_envelope(client.patch("/api/ai_chat/5", headers=bob, json={"title": "x"}), 404)
    for bad in [
        {"title": ""},
        {"title": "   "},
        {"title": "x" * 201},
        {"title": "a\u0000b"},
        {},
        {"title": "a", "x": 1},
    ]:
        assert_envelope(client.patch("/api/ai_chat/5", headers=ada, json=bad), 422)


def test_delete_session_removes_its_messages(client, ada, bob, app):
    ask(client, ada, "keep me", session_id=1)
    ask(client, ada, "delete me", session_id=2)
    ask(client, ada, "delete me too", session_id=2)
    assert_envelope(client.delete("/api/ai_chat/2", headers=bob), 404)
    response = client.delete("/api/ai_chat/2", headers=ada)
    assert response.status_code == 200
    assert response.json == {"message": "Chat session deleted successfully"}
    assert_envelope(client.delete("/api/ai_chat/2", headers=ada), 404, "Chat session not found")
    assert_envelope(client.get("/api/ai_chat/2", headers=ada), 404)
    with app.app_context():
        contents = db.session.scalars(select(Message.content).order_by(Message.id)).all()
    assert contents == ["keep me", "Echo: keep me"]
    # Its number is free again: sending to it starts a new session.
    assert ask(client, ada, "fresh start", session_id=2).json["session_id"] == 2
    assert client.get("/api/ai_chat/2", headers=ada).json["title"] == "fresh start"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/ai_chat/home"),
        ("get", "/api/ai_chat/history"),
        ("get", "/api/ai_chat/sessions"),
        ("get", "/api/ai_chat/models"),
        ("post", REQUEST),
        ("get", "/api/ai_chat/1"),
        ("patch", "/api/ai_chat/1"),
        ("delete", "/api/ai_chat/1"),
    ],
)
def test_chat_endpoints_need_a_token(client, method, path):
    assert_envelope(getattr(client, method)(path, json={}), 401)


@pytest.mark.parametrize(
    ("who", "get", "patch", "delete", "continue_"),
    [
        ("owner", 200, 200, 200, "same"),
        ("other", 404, 404, 404, "new"),
        ("admin", 404, 404, 404, "new"),
    ],
)
def test_session_authorization_matrix(client, auth, ada, who, get, patch, delete, continue_):
    """Sessions are private even from admins: numbers are per user, so others see none of them."""
    ask(client, ada, "private", session_id=77)
    headers = {"owner": ada, "other": auth.register("eve@example.com"), "admin": auth.admin()}[who]
    reply = ask(client, headers, "mine?", session_id=77)
    history = client.get("/api/ai_chat/77", headers=headers).json
    if continue_ == "same":
        assert [m["content"] for m in history["messages"]][0] == "private"
    else:
        assert [m["content"] for m in history["messages"]] == ["mine?", reply.json["content"]]
        client.delete("/api/ai_chat/77", headers=headers)  # their own, new session
    assert client.get("/api/ai_chat/77", headers=headers).status_code == get
    assert (
        client.patch("/api/ai_chat/77", headers=headers, json={"title": "t"}).status_code == patch
    )
    assert client.delete("/api/ai_chat/77", headers=headers).status_code == delete
    ada_view = client.get("/api/ai_chat/77", headers=ada)
    assert (ada_view.status_code == 404) == (who == "owner")


def test_racing_requests_for_one_new_number_make_one_session(app, auth):
    headers = auth.register()
    barrier = threading.Barrier(8)
    statuses = []

    def send(i):
        client = app.test_client()
        barrier.wait()
        response = ask(client, headers, f"racer {i}", session_id=4242)
        statuses.append((response.status_code, response.json.get("session_id")))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [(200, 4242)] * 8
    with app.app_context():
        assert db.session.scalar(select(func.count(ChatSession.id))) == 1
        assert db.session.scalar(select(func.count(Message.id))) == 16


def test_racing_new_sessions_get_distinct_numbers(app, auth):
    headers = auth.register()
    barrier = threading.Barrier(12)
    numbers = []

    def send(i):
        barrier.wait()
        response = ask(app.test_client(), headers, f"racer {i}")
        numbers.append(response.json.get("session_id", response.json))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(numbers) == list(range(1, 13))
