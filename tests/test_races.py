"""Requests racing each other: a delete landing while a turn, a rename or a stream is in flight.

The fake provider holds its answer back until the test has deleted the session; every race ends
in a documented status with nothing half written, and nothing lands in another user's session.
"""

import threading

import pytest
from sqlalchemy import select

from polygenix.extensions import db
from polygenix.models import ChatSession, Message
from tests.fake_provider import openai_stream
from tests.helpers import ask, assert_envelope, in_thread, read_events, stream, wait_for


@pytest.fixture
def app(provider_app):
    """Every race here involves the fake provider."""
    return provider_app


def all_messages(app):
    with app.app_context():
        return [
            (s.user_id, s.number, m.is_bot, m.content)
            for m, s in db.session.execute(
                select(Message, ChatSession).join(ChatSession).order_by(Message.id)
            )
        ]


def test_a_reply_never_lands_in_a_session_deleted_while_the_provider_answers(
    app, client, auth, fake
):
    ada, eve = auth.register("ada@example.com"), auth.register("eve@example.com")
    assert ask(client, ada, "first", session_id=5).status_code == 200
    fake.reply(delay=0.5)
    finished = in_thread(lambda: ask(app.test_client(), ada, "second", "openai", session_id=5))
    wait_for(lambda: fake.requests, what="the provider call")
    assert client.delete("/api/ai_chat/5", headers=ada).status_code == 200
    # Eve starts a session meanwhile: it gets a new id, never the deleted one.
    assert ask(client, eve, "eve's own", session_id=5).status_code == 200
    assert_envelope(finished(), 404, "Chat session not found")
    assert [m[3] for m in all_messages(app)] == ["eve's own", "Echo: eve's own"]


def test_a_stream_whose_session_is_deleted_mid_reply_ends_with_a_404_event(app, client, auth, fake):
    ada, eve = auth.register("ada@example.com"), auth.register("eve@example.com")
    assert ask(client, ada, "first", session_id=5).status_code == 200
    fake.reply(chunks=openai_stream(["one ", "two ", "three"], "gpt-4.1-mini"), gap=0.3)
    finished = in_thread(
        lambda: read_events(
            stream(app.test_client(), ada, "openai", "second", 5).get_data(as_text=True)
        )
    )
    wait_for(lambda: any(m[3] == "second" for m in all_messages(app)), what="the question")
    assert client.delete("/api/ai_chat/5", headers=ada).status_code == 200
    assert ask(client, eve, "eve's own", session_id=5).status_code == 200
    events = finished()
    assert events[0][0] == "start"
    assert events[-1][0] == "error" and events[-1][1]["code"] == 404
    assert [m[3] for m in all_messages(app)] == ["eve's own", "Echo: eve's own"]


def test_a_stream_whose_session_is_deleted_before_it_starts_is_a_404(app, client, auth, fake):
    """The provider's stream opens before the question is stored: if the session went in
    between, the answer is a plain 404 and the provider is hung up on."""
    ada = auth.register("ada@example.com")
    assert ask(client, ada, "first", session_id=5).status_code == 200
    fake.reply(delay=0.5, chunks=openai_stream(["unread"] * 20, "gpt-4.1-mini"), gap=0.2)
    finished = in_thread(lambda: stream(app.test_client(), ada, "openai", "second", 5))
    wait_for(lambda: fake.requests, what="the provider call")
    assert client.delete("/api/ai_chat/5", headers=ada).status_code == 200
    assert_envelope(finished(), 404, "Chat session not found")
    assert fake.disconnected.wait(5)
    assert all_messages(app) == []


def test_a_failed_turn_whose_session_was_deleted_meanwhile_is_a_404(app, client, auth, fake):
    ada = auth.register("ada@example.com")
    assert ask(client, ada, "first", session_id=3).status_code == 200
    fake.reply(status=400, body={"error": {"message": "bad"}}, delay=0.5)
    finished = in_thread(
        lambda: ask(app.test_client(), ada, "doomed", model="openai", session_id=3)
    )
    wait_for(lambda: fake.requests, what="the provider call")
    assert client.delete("/api/ai_chat/3", headers=ada).status_code == 200
    assert_envelope(finished(), 404, "Chat session not found")
    assert all_messages(app) == []


def test_renaming_a_session_being_deleted_is_a_404_or_a_rename_never_both(app, auth):
    """Rename and delete race: each rename answers 200 (it came first) or 404 (the session was
    gone), never a 500; a 200 rename's title is what a later read would have shown."""
    ada = auth.register("ada@example.com")
    for round_ in range(10):
        client = app.test_client()
        assert ask(client, ada, "to be renamed", session_id=round_ + 1).status_code == 200
        barrier = threading.Barrier(2)

        def rename(number=round_ + 1, barrier=barrier):
            barrier.wait()
            return app.test_client().patch(
                f"/api/ai_chat/{number}", headers=ada, json={"title": "renamed"}
            )

        def remove(number=round_ + 1, barrier=barrier):
            barrier.wait()
            return app.test_client().delete(f"/api/ai_chat/{number}", headers=ada)

        renamed, removed = in_thread(rename), in_thread(remove)
        renamed, removed = renamed(), removed()
        assert removed.status_code == 200
        assert renamed.status_code in (200, 404), renamed.json
        if renamed.status_code == 404:
            assert_envelope(renamed, 404, "Chat session not found")
    assert all_messages(app) == []
