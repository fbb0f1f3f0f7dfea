"""Conversations as people use them: regenerate and edit (superseded messages), per-session
instructions and default model, activity order — through the API, on the test database."""

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text, update

from polygenix.chat.sweep import sweep_dead_streams
from polygenix.extensions import db
from polygenix.models import ChatSession, Message
from tests.fake_provider import chat_body, chunk, openai_stream, sse
from tests.helpers import (
    TEST_DATABASE_URL,
    ask,
    assert_envelope,
    in_thread,
    read_events,
    wait_for,
)
from tests.provider_setup import SYSTEM


def regenerate(client, headers, number, **body):
    return client.post(f"/api/ai_chat/{number}/regenerate", headers=headers, json=body or None)


def edit(client, headers, number, message_id, content, **body):
    return client.put(
        f"/api/ai_chat/{number}/messages/{message_id}",
        headers=headers,
        json={"content": content} | body,
    )


def transcript(client, headers, number, include_superseded=False):
    query = "?include_superseded=true" if include_superseded else ""
    messages = client.get(f"/api/ai_chat/{number}{query}", headers=headers).json["messages"]
    return [(m["content"], m["superseded"]) for m in messages]


def answer(content: str) -> dict:
    """An OpenAI chat completion saying `content`."""
    return chat_body(content=content)


def sent(fake) -> list[dict]:
    return fake.requests[-1].body["messages"]


# --- regenerate -----------------------------------------------------------------------------


def test_regenerate_keeps_the_earlier_reply_marked_superseded(client, ada):
    first = ask(client, ada, "tell me", session_id=1).json
    response = regenerate(client, ada, 1)
    assert response.status_code == 200
    again = response.json
    assert again["id"] != first["id"] and again["content"] == "Echo: tell me"
    assert (again["superseded"], again["session_id"], again["model"]) == (False, 1, "echo/echo")
    assert transcript(client, ada, 1) == [("tell me", False), ("Echo: tell me", False)]
    everything = client.get("/api/ai_chat/1?include_superseded=true", headers=ada).json
    assert [(m["id"], m["superseded"]) for m in everything["messages"][1:]] == [
        (first["id"], True),
        (again["id"], False),
    ]
    [summary] = client.get("/api/ai_chat/sessions", headers=ada).json
    assert summary["message_count"] == 2


def test_regenerate_answers_only_the_last_question_with_what_came_before(provider_app, fake, auth):
    client, ada = provider_app.test_client(), auth.register()
    fake.reply(body=answer("first answer"))
    ask(client, ada, "one", model="openai", session_id=3)
    fake.reply(body=answer("second answer"))
    ask(client, ada, "two", model="openai", session_id=3)
    fake.reply(body=answer("second answer, again"))
    assert regenerate(client, ada, 3).json["content"] == "second answer, again"
    assert sent(fake) == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "two"},
    ]
    fake.reply(body=answer("three answered"))
    ask(client, ada, "three", model="openai", session_id=3)
    # The superseded reply is never context again.
    assert [m["content"] for m in sent(fake)[1:]] == [
        "one",
        "first answer",
        "two",
        "second answer, again",
        "three",
    ]


def test_regenerate_model_is_the_one_named_else_the_sessions_else_the_replaced_ones(
    provider_app, fake, auth
):
    client, ada = provider_app.test_client(), auth.register()
    ask(client, ada, "hi", model="groq", session_id=1)
    assert regenerate(client, ada, 1).json["model"].startswith("groq/")
    assert fake.requests[-1].path.startswith("/openai/v1/")
    assert regenerate(client, ada, 1, model="openai").json["model"].startswith("openai/")
    client.patch("/api/ai_chat/1", headers=ada, json={"model": "mistral"})
    assert regenerate(client, ada, 1).json["model"].startswith("mistral/")


def test_regenerate_of_a_failed_message_needs_a_model_and_clears_the_failure(client, ada):
    assert ask(client, ada, "are you there?", model="gemini", session_id=2).status_code == 503
    body = assert_envelope(regenerate(client, ada, 2), 422)
    assert body["errors"] == {"json": {"model": ["Missing data for required field."]}}
    response = regenerate(client, ada, 2, model="echo")
    assert response.status_code == 200
    [question, reply] = client.get("/api/ai_chat/2", headers=ada).json["messages"]
    assert (question["failed"], reply["content"]) == (False, "Echo: are you there?")


def test_a_failed_regenerate_changes_nothing(provider_app, fake, auth):
    client, ada = provider_app.test_client(), auth.register()
    fake.reply(body=answer("the answer"))
    ask(client, ada, "question", model="openai", session_id=1)
    before = client.get("/api/ai_chat/1?include_superseded=true", headers=ada).json
    fake.reply(status=400, body={"error": {"message": "bad request", "type": "invalid"}})
    assert regenerate(client, ada, 1).status_code == 502
    fake.reply(status=400, body={"error": {"message": "bad request", "type": "invalid"}})
    assert regenerate(client, ada, 1, stream=True).status_code == 502
    after = client.get("/api/ai_chat/1?include_superseded=true", headers=ada).json
    assert after["messages"] == before["messages"]


def test_regenerate_streamed(client, ada):
    ask(client, ada, "stream me", session_id=4)
    response = regenerate(client, ada, 4, stream=True)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events = read_events(response.get_data(as_text=True))
    kinds = [kind for kind, _ in events if kind != "comment"]
    assert kinds[0] == "start" and kinds[-1] == "done"
    start, done = events[0][1], events[-1][1]
    question = transcript(client, ada, 4)
    assert question == [("stream me", False), ("Echo: stream me", False)]
    assert start["session_id"] == 4 and done["superseded"] is False
    everything = transcript(client, ada, 4, include_superseded=True)
    assert [s for _, s in everything] == [False, True, False]


def test_regenerate_refusals(client, ada, bob):
    ask(client, bob, "bob's", session_id=5)
    assert_envelope(regenerate(client, ada, 5), 404, "Chat session not found")
    assert_envelope(regenerate(client, ada, 0), 404)
    ask(client, ada, "mine", session_id=6)
    for body in ({"model": "no-such-provider"}, {"temperature": 9}, {"stream": "yes"}):
        assert regenerate(client, ada, 6, **body).status_code == 422
    assert transcript(client, ada, 6, include_superseded=True) == [
        ("mine", False),
        ("Echo: mine", False),
    ]


def test_regenerate_raced_by_a_new_message_is_a_409_and_stores_nothing(provider_app, fake, auth):
    client, ada = provider_app.test_client(), auth.register()
    ask(client, ada, "first", model="openai", session_id=1)
    fake.reply(body=answer("late"), delay=0.5)
    late = in_thread(lambda: regenerate(provider_app.test_client(), ada, 1))
    threading.Event().wait(0.2)  # the regenerate is waiting for its provider
    assert ask(client, ada, "second", model="echo", session_id=1).status_code == 200
    assert_envelope(late(), 409, "changed meanwhile")
    assert transcript(client, ada, 1, include_superseded=True) == [
        ("first", False),
        ("Hello from gpt-4.1-mini", False),
        ("second", False),
        ("Echo: second", False),
    ]


def test_regenerate_of_a_session_deleted_meanwhile_is_a_404(provider_app, fake, auth):
    client, ada = provider_app.test_client(), auth.register()
    ask(client, ada, "first", model="openai", session_id=1)
    fake.reply(body=answer("late"), delay=0.5)
    late = in_thread(lambda: regenerate(provider_app.test_client(), ada, 1))
    threading.Event().wait(0.2)
    assert client.delete("/api/ai_chat/1", headers=ada).status_code == 200
    assert_envelope(late(), 404, "Chat session not found")
    assert client.get("/api/ai_chat/history", headers=ada).json == []


# --- edit -------------------------------------------------------------------------------------


def _three_turns(client, headers, number):
    for words in ("a", "b", "c"):
        ask(client, headers, words, session_id=number)
    return client.get(f"/api/ai_chat/{number}", headers=headers).json["messages"]


def test_edit_keeps_the_id_supersedes_what_followed_and_answers_anew(client, ada):
    messages = _three_turns(client, ada, 7)
    b = messages[2]
    response = edit(client, ada, 7, b["id"], "B, better")
    assert response.status_code == 200
    assert response.json["content"] == "Echo: B, better"
    shown = client.get("/api/ai_chat/7", headers=ada).json["messages"]
    assert [(m["content"], m["is_bot"]) for m in shown] == [
        ("a", False),
        ("Echo: a", True),
        ("B, better", False),
        ("Echo: B, better", True),
    ]
    assert shown[2]["id"] == b["id"]
    assert transcript(client, ada, 7, include_superseded=True) == [
        ("a", False),
        ("Echo: a", False),
        ("B, better", False),
        ("Echo: b", True),
        ("c", True),
        ("Echo: c", True),
        ("Echo: B, better", False),
    ]
    [summary] = client.get("/api/ai_chat/sessions", headers=ada).json
    assert summary["message_count"] == 4


def test_edit_sends_only_what_came_before_the_edited_message(provider_app, fake, auth):
    client, ada = provider_app.test_client(), auth.register()
    for words in ("a", "b", "c"):
        fake.reply(body=answer(f"answer {words}"))
        ask(client, ada, words, model="openai", session_id=1)
    b = client.get("/api/ai_chat/1", headers=ada).json["messages"][2]
    fake.reply(body=answer("answer B"))
    assert edit(client, ada, 1, b["id"], "B").json["content"] == "answer B"
    assert [m["content"] for m in sent(fake)] == [SYSTEM, "a", "answer a", "B"]


def test_a_failed_edit_keeps_the_new_words_flagged(provider_app, fake, auth):
    client, ada = provider_app.test_client(), auth.register()
    fake.reply(body=answer("fine"))
    ask(client, ada, "typo", model="openai", session_id=1)
    question = client.get("/api/ai_chat/1", headers=ada).json["messages"][0]
    fake.reply(status=401, body={"error": {"message": "bad key", "type": "auth"}})
    assert edit(client, ada, 1, question["id"], "no typo").status_code == 502
    [flagged] = client.get("/api/ai_chat/1", headers=ada).json["messages"]
    assert (flagged["id"], flagged["content"], flagged["failed"]) == (
        question["id"],
        "no typo",
        True,
    )
    fake.reply(body=answer("fine again"))
    assert regenerate(client, ada, 1).json["content"] == "fine again"
    assert transcript(client, ada, 1) == [("no typo", False), ("fine again", False)]


def test_edit_streamed(client, ada):
    messages = _three_turns(client, ada, 8)
    response = edit(client, ada, 8, messages[0]["id"], "A", stream=True)
    events = read_events(response.get_data(as_text=True))
    assert events[0][0] == "start" and events[-1][0] == "done"
    assert events[0][1]["user_message_id"] == messages[0]["id"]
    assert transcript(client, ada, 8) == [("A", False), ("Echo: A", False)]


def test_edit_refusals(client, ada, bob):
    messages = _three_turns(client, ada, 9)
    bobs = _three_turns(client, bob, 9)
    question, reply = messages[0], messages[1]
    body = assert_envelope(edit(client, ada, 9, reply["id"], "not mine to edit"), 422)
    assert "message_id" in body["errors"]["json"]
    # Bob's message, through Ada's session of the same number, or through Bob's: not found.
    assert_envelope(edit(client, ada, 9, bobs[0]["id"], "hijack"), 404, "Message not found")
    assert_envelope(edit(client, bob, 9, question["id"], "hijack"), 404, "Message not found")
    assert_envelope(edit(client, ada, 10, question["id"], "x"), 404, "Chat session not found")
    assert_envelope(edit(client, ada, 9, 2**31 - 1, "x"), 404)
    for content in ("", "   ", "nul\x00", "x" * 100_001, None, 5):
        assert edit(client, ada, 9, question["id"], content).status_code == 422
    edit(client, ada, 9, question["id"], "first, edited")
    superseded = messages[2]  # "b", superseded by the edit of "a"
    body = assert_envelope(edit(client, ada, 9, superseded["id"], "b again"), 422)
    assert "superseded" in body["message"]
    assert [m["content"] for m in client.get("/api/ai_chat/9", headers=bob).json["messages"]] == [
        m["content"] for m in bobs
    ]


def test_the_original_client_sees_a_plain_linear_transcript(client, ada):
    messages = _three_turns(client, ada, 11)
    regenerate(client, ada, 11)
    edit(client, ada, 11, messages[2]["id"], "b2")
    regenerate(client, ada, 11)
    [session] = client.get("/api/ai_chat/history", headers=ada).json
    shown = session["messages"]
    assert [m["is_bot"] for m in shown] == [False, True, False, True]
    assert not any(m["superseded"] for m in shown)
    assert [m["content"] for m in shown] == ["a", "Echo: a", "b2", "Echo: b2"]
    everything = client.get("/api/ai_chat/history?include_superseded=true", headers=ada).json
    assert len(everything[0]["messages"]) == 9
    exported = client.get("/api/ai_chat/11/export?format=json", headers=ada).json
    assert [m["content"] for m in exported["messages"]] == ["a", "Echo: a", "b2", "Echo: b2"]
    markdown = client.get("/api/ai_chat/11/export", headers=ada).get_data(as_text=True)
    assert "Echo: c" not in markdown and "Echo: b2" in markdown
    full = client.get("/api/ai_chat/11/export?include_superseded=true", headers=ada)
    assert "Echo: c" in full.get_data(as_text=True)


def test_include_superseded_takes_only_true_or_false(client, ada):
    ask(client, ada, "x", session_id=1)
    for value in ("yes", "1", "TRUE", ""):
        assert (
            client.get(f"/api/ai_chat/1?include_superseded={value}", headers=ada).status_code == 422
        )


# --- per-session settings ---------------------------------------------------------------------


def test_a_sessions_system_prompt_replaces_the_servers(provider_app, fake, auth):
    client, ada = provider_app.test_client(), auth.register()
    ask(client, ada, "hi", model="openai", session_id=1)
    response = client.patch("/api/ai_chat/1", headers=ada, json={"system_prompt": "Speak Latin."})
    assert response.status_code == 200
    assert response.json["system_prompt"] == "Speak Latin."
    ask(client, ada, "again", model="openai", session_id=1)
    assert sent(fake)[0] == {"role": "system", "content": "Speak Latin."}
    regenerate(client, ada, 1)
    assert sent(fake)[0] == {"role": "system", "content": "Speak Latin."}
    ask(client, ada, "elsewhere", model="openai", session_id=2)
    assert sent(fake)[0] == {"role": "system", "content": SYSTEM}
    client.patch("/api/ai_chat/1", headers=ada, json={"system_prompt": None})
    ask(client, ada, "cleared", model="openai", session_id=1)
    assert sent(fake)[0] == {"role": "system", "content": SYSTEM}
    assert client.get("/api/ai_chat/1", headers=ada).json["system_prompt"] is None


def test_a_sessions_default_model_is_used_when_a_request_names_none(provider_app, fake, auth):
    client, ada = provider_app.test_client(), auth.register()
    ask(client, ada, "hi", model="echo", session_id=1)
    body = assert_envelope(
        client.post(
            "/api/ai_chat/request", headers=ada, json={"content": "no model", "session_id": 1}
        ),
        422,
    )
    assert body["errors"] == {"json": {"model": ["Missing data for required field."]}}
    response = client.patch("/api/ai_chat/1", headers=ada, json={"model": "openai"})
    assert (response.status_code, response.json["model"]) == (200, "openai")
    reply = client.post(
        "/api/ai_chat/request", headers=ada, json={"content": "no model", "session_id": 1}
    ).json
    assert reply["model"].startswith("openai/")
    # A named model still wins; a new session has no default.
    assert ask(client, ada, "named", model="echo", session_id=1).json["model"] == "echo/echo"
    assert (
        client.post(
            "/api/ai_chat/request", headers=ada, json={"content": "new", "session_id": 2}
        ).status_code
        == 422
    )
    listed = client.get("/api/ai_chat/sessions", headers=ada).json
    assert [(s["chat_id"], s["model"]) for s in listed] == [(1, "openai")]


def test_session_settings_refusals(client, ada, bob):
    ask(client, ada, "hi", session_id=1)

    def patch(body, who=ada):
        return client.patch("/api/ai_chat/1", headers=who, json=body)

    assert_envelope(patch({}), 422, "Send title, system_prompt or model")
    assert_envelope(patch({"model": "no-such-provider"}), 422, "Unknown model")
    assert patch({"system_prompt": "x" * 8001}).status_code == 422
    assert patch({"system_prompt": "x" * 8000}).status_code == 200
    for bad in (
        {"system_prompt": ""},
        {"system_prompt": "nul\x00"},
        {"model": ""},
        {"title": None},
    ):
        assert patch(bad).status_code == 422, bad
    assert_envelope(patch({"model": "echo"}, who=bob), 404)
    session = client.get("/api/ai_chat/1", headers=ada).json
    assert (session["title"], session["model"], len(session["system_prompt"])) == ("hi", None, 8000)


# --- activity order ---------------------------------------------------------------------------


def test_sessions_list_by_latest_activity_and_created_on_request(client, ada):
    for number in (1, 2, 3):
        ask(client, ada, f"s{number}", session_id=number)
    ask(client, ada, "back to one", session_id=1)
    client.patch("/api/ai_chat/2", headers=ada, json={"title": "renamed is not activity"})

    def order(query):
        listed = client.get(f"/api/ai_chat/sessions{query}", headers=ada).json
        return [s["chat_id"] for s in listed]

    assert order("") == [1, 3, 2]
    assert order("?order=updated") == [1, 3, 2]
    assert order("?order=created") == [3, 2, 1]
    regenerate(client, ada, 2)
    assert order("") == [2, 1, 3]
    assert order("?page=1&page_size=2") == [2, 1] and order("?page=2&page_size=2") == [3]
    assert client.get("/api/ai_chat/history?order=oldest", headers=ada).status_code == 422


def test_ties_in_activity_are_ordered_by_number(client, ada, app):
    for number in (5, 9, 7):
        ask(client, ada, "same time", session_id=number)
    with app.app_context():
        db.session.execute(update(ChatSession).values(updated_at=datetime(2026, 1, 1, tzinfo=UTC)))
        db.session.commit()
    listed = client.get("/api/ai_chat/sessions", headers=ada).json
    assert [s["chat_id"] for s in listed] == [9, 7, 5]


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="SQLite's query plan")
def test_listing_by_activity_reads_the_index_on_sqlite(app):
    with app.app_context():
        plan = db.session.execute(
            text(
                "EXPLAIN QUERY PLAN SELECT * FROM chat_sessions WHERE user_id = 1"
                " ORDER BY updated_at DESC, number DESC LIMIT 20"
            )
        ).all()
    details = " ".join(row[-1] for row in plan)
    assert "ix_chat_sessions_user_id_updated_at" in details and "TEMP B-TREE" not in details


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="SQLite's query plan")
def test_shown_messages_are_read_by_session_and_leased_ones_by_lease(app):
    def plan(sql):
        with app.app_context():
            return " ".join(
                row[-1] for row in db.session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
            )

    # Nearly every message has no lease: the partial index never holds them.
    shown = plan(
        "SELECT * FROM messages WHERE session_id IN (1, 2) AND lease_until IS NULL"
        " AND superseded = 0 ORDER BY session_id, id"
    )
    assert "ix_messages_session_id_id" in shown and "lease_until" not in shown
    assert "ix_messages_lease_until" in plan("SELECT id FROM messages WHERE lease_until < 5")


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL's query plan")
def test_listing_by_activity_reads_the_index_on_postgresql(app):
    with app.app_context():
        db.session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = db.session.execute(
            text(
                "EXPLAIN SELECT * FROM chat_sessions WHERE user_id = 1"
                " ORDER BY updated_at DESC, number DESC LIMIT 20"
            )
        ).scalars()
        details = " ".join(plan)
        db.session.rollback()
    assert "ix_chat_sessions_user_id_updated_at" in details and "Sort" not in details


def test_the_same_regenerate_twice_at_once_leaves_one_current_reply(make_app, auth):
    app = make_app()
    ada = auth.register(client=app.test_client())
    ask(app.test_client(), ada, "twice", session_id=1)
    racers = [in_thread(lambda: regenerate(app.test_client(), ada, 1)) for _ in range(4)]
    statuses = sorted(join().status_code for join in racers)
    assert set(statuses) <= {200, 409} and 200 in statuses
    shown = transcript(app.test_client(), ada, 1)
    assert shown == [("twice", False), ("Echo: twice", False)]
    everything = transcript(app.test_client(), ada, 1, include_superseded=True)
    assert len(everything) == 2 + statuses.count(200)


def test_search_finds_the_current_transcript_only(client, ada):
    ask(client, ada, "where do zebras sleep", session_id=1)
    question = client.get("/api/ai_chat/1", headers=ada).json["messages"][0]
    edit(client, ada, 1, question["id"], "where do lions sleep")

    def found(q):
        results = client.get(f"/api/ai_chat/search?q={q}", headers=ada).json
        return sorted((r["message_id"], r["is_bot"]) for r in results)

    # The title (made from the first words) still says zebras; no message does.
    assert found("zebras") == [(None, None)]
    current = client.get("/api/ai_chat/1", headers=ada).json["messages"]
    assert found("lions") == sorted((m["id"], m["is_bot"]) for m in current)


# --- answering again while the conversation changes -----------------------------------------


def _stream_events(app, headers, url, body):
    """A streamed request from another client, read whole: its (event, data) pairs."""
    return in_thread(
        lambda: read_events(
            app.test_client().post(url, headers=headers, json=body).get_data(as_text=True)
        )
    )


def test_a_streamed_regenerate_raced_by_a_new_message_ends_409_and_keeps_it(
    provider_app, fake, auth
):
    client, ada = provider_app.test_client(), auth.register()
    fake.reply(body=answer("first answer"))
    ask(client, ada, "first", model="openai", session_id=1)
    fake.reply(chunks=openai_stream(["slow", " answer"], "gpt-4.1-mini"), gap=0.3)
    events = _stream_events(provider_app, ada, "/api/ai_chat/1/regenerate", {"stream": True})

    def streaming():  # its reply row is stored, leased, once the stream has begun
        with provider_app.app_context():
            return db.session.scalar(select(Message.id).where(Message.lease_until.is_not(None)))

    wait_for(streaming, what="the regenerate's stream to begin")
    assert ask(client, ada, "second", model="echo", session_id=1).status_code == 200
    kind, data = events()[-1]
    assert (kind, data["code"]) == ("error", 409)
    assert transcript(client, ada, 1) == [
        ("first", False),
        ("first answer", False),
        ("second", False),
        ("Echo: second", False),
    ]
    kept = transcript(client, ada, 1, include_superseded=True)
    assert ("slow answer", True) in kept and len(kept) == 5


def test_a_regenerate_never_undoes_an_edit_made_meanwhile(provider_app, fake, auth):
    client, ada = provider_app.test_client(), auth.register()
    fake.reply(body=answer("to the old words"))
    ask(client, ada, "old words", model="openai", session_id=1)
    question = client.get("/api/ai_chat/1", headers=ada).json["messages"][0]
    fake.reply(body=answer("late, to the old words"), delay=0.5)
    late = in_thread(lambda: regenerate(provider_app.test_client(), ada, 1))
    wait_for(lambda: len(fake.requests) == 2, what="the regenerate's provider call")
    assert edit(client, ada, 1, question["id"], "new words", model="echo").status_code == 200
    assert_envelope(late(), 409, "changed meanwhile")
    assert transcript(client, ada, 1) == [("new words", False), ("Echo: new words", False)]


def test_a_streamed_regenerate_with_no_text_leaves_a_failed_message_failed(
    provider_app, fake, auth
):
    client, ada = provider_app.test_client(), auth.register()
    fake.reply(status=400, body={"error": {"message": "bad request", "type": "invalid"}})
    ask(client, ada, "try me", model="openai", session_id=1)
    # It begins (reasoning), then ends with no answer.
    fake.reply(chunks=[chunk({"reasoning_content": "Hmm."}), chunk(finish="stop"), sse("[DONE]")])
    response = regenerate(client, ada, 1, stream=True, model="deepseek")
    events = read_events(response.get_data(as_text=True))
    assert [kind for kind, _ in events] == ["start", "reasoning", "error"]
    [question] = client.get("/api/ai_chat/1?include_superseded=true", headers=ada).json["messages"]
    assert question["failed"] is True and "bad request" in question["error"]


def test_a_regenerate_whose_worker_died_is_settled_by_the_sweep(client, ada, app):
    ask(client, ada, "question", session_id=1)
    ask(client, ada, "another", session_id=2)
    past = datetime(2026, 1, 1, tzinfo=UTC)
    with app.app_context():
        for number, text_so_far in ((1, "half an ans"), (2, "")):
            session = db.session.scalar(select(ChatSession).where(ChatSession.number == number))
            question = db.session.scalar(
                select(Message).where(Message.session_id == session.id, ~Message.is_bot)
            )
            db.session.add(
                Message(
                    session_id=session.id,
                    is_bot=True,
                    content=text_so_far,
                    reply_to_id=question.id,
                    lease_until=past,
                )
            )
        db.session.commit()
        assert sweep_dead_streams() == 2
    # With text, the new reply replaces the earlier one (kept, flagged incomplete);
    # with none, it is dropped and the earlier reply stays.
    assert transcript(client, ada, 1) == [("question", False), ("half an ans", False)]
    assert ("Echo: question", True) in transcript(client, ada, 1, include_superseded=True)
    assert transcript(client, ada, 2, include_superseded=True) == [
        ("another", False),
        ("Echo: another", False),
    ]
