"""Requests racing each other: a delete landing while a turn, a rename or a stream is in flight.

The fake provider holds its answer back until the test has deleted the session; every race ends
in a documented status with nothing half written, and nothing lands in another user's session.
"""

import threading

import pytest
import requests
from sqlalchemy import select

from polygenix.extensions import db
from polygenix.models import ChatSession, Message, User
from tests.fake_provider import openai_stream
from tests.gunicorn_server import gunicorn, register_over_http
from tests.helpers import (
    amid_a_deletion,
    ask,
    assert_envelope,
    at_once,
    in_thread,
    read_events,
    stream,
    wait_for,
)


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


def next_id_is(app, table: str, value: int) -> None:
    """Make the database hand out `value` as the next id of `table`: an id reused, as SQLite
    did while its tables lacked AUTOINCREMENT."""
    with app.app_context(), db.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql(
                "UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (value - 1, table)
            )
        else:
            connection.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {value}, false)"
            )


def session_row(app, email: str, number: int) -> ChatSession:
    with app.app_context():
        return db.session.scalar(
            select(ChatSession).join(User).where(User.email == email, ChatSession.number == number)
        )


def test_a_turn_never_stores_into_another_users_session_that_took_its_id(app, client, auth, fake):
    """Even were an id handed out again, a turn whose session was deleted meanwhile is a 404
    and writes nothing into the session that now has that id."""
    ada, eve = auth.register("ada@example.com"), auth.register("eve@example.com")
    assert ask(client, ada, "first", session_id=5).status_code == 200
    taken = session_row(app, "ada@example.com", 5).id
    fake.reply(delay=0.5)
    finished = in_thread(lambda: ask(app.test_client(), ada, "second", "openai", session_id=5))
    wait_for(lambda: fake.requests, what="the provider call")
    assert client.delete("/api/ai_chat/5", headers=ada).status_code == 200
    next_id_is(app, "chat_sessions", taken)
    assert ask(client, eve, "eve's own", session_id=5).status_code == 200
    assert session_row(app, "eve@example.com", 5).id == taken  # the id was handed out again
    assert_envelope(finished(), 404, "Chat session not found")
    assert [m[3] for m in all_messages(app)] == ["eve's own", "Echo: eve's own"]


def test_a_stream_never_writes_into_another_users_reply_that_took_its_id(
    make_app, provider_config, auth, fake
):
    """A stream whose session was deleted mid-reply, while another user's stream took its
    session's and messages' ids: the first ends with a 404 event and writes nothing of its own
    into the other's reply, which ends whole."""
    app = make_app(provider_config | {"STREAM_SAVE_INTERVAL": 0.01})
    client = app.test_client()
    ada = auth.register("ada@example.com", client=client)
    eve = auth.register("eve@example.com", client=client)
    assert ask(client, ada, "first", session_id=5).status_code == 200
    taken = session_row(app, "ada@example.com", 5).id
    # Ada's stream: its start, a piece a second later, the rest a second after that; Eve's:
    # its first piece at once, the rest when Ada's stream is over.
    ada_chunks = openai_stream(["ada one ", "ada two"], "m")
    fake.reply(chunks=[ada_chunks[0], ada_chunks[1], b"".join(ada_chunks[2:])], gap=1.0)
    eve_chunks = openai_stream(["eve ", "reply"], "m")
    fake.reply(chunks=[b"".join(eve_chunks[:2]), b"".join(eve_chunks[2:])], gap=3.0)
    ada_stream = in_thread(
        lambda: read_events(
            stream(app.test_client(), ada, "openai", "second", 5).get_data(as_text=True)
        )
    )
    wait_for(lambda: any(m[3] == "second" for m in all_messages(app)), what="ada's question")
    with app.app_context():
        question, reply = db.session.scalars(
            select(Message.id).where(Message.session_id == taken).order_by(Message.id.desc())
        ).all()[1::-1]
    assert client.delete("/api/ai_chat/5", headers=ada).status_code == 200
    next_id_is(app, "chat_sessions", taken)
    next_id_is(app, "messages", question)
    eve_stream = in_thread(
        lambda: read_events(
            stream(app.test_client(), eve, "openai", "eve's own", 5).get_data(as_text=True)
        )
    )
    wait_for(lambda: any(m[3] == "eve's own" for m in all_messages(app)), what="eve's question")
    with app.app_context():
        eve_ids = db.session.scalars(select(Message.id).order_by(Message.id)).all()
    assert eve_ids == [question, reply]  # eve's messages took ada's ids
    events = ada_stream()
    assert events[-1][0] == "error" and events[-1][1]["code"] == 404
    events = eve_stream()
    assert events[-1][0] == "done" and events[-1][1]["content"] == "eve reply"
    assert all_messages(app) == [
        (eve_user_id(app), 5, False, "eve's own"),
        (eve_user_id(app), 5, True, "eve reply"),
    ]


def eve_user_id(app) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == "eve@example.com"))


BURST = 20


def test_an_account_deleted_amid_a_burst_of_its_new_sessions_never_deadlocks(app, auth):
    """A user's new sessions (each locking the user's counter, then adding to their usage row)
    and the deletion of their account (the user's row, then its usage, sessions and messages)
    take rows in one order: every turn is stored or answers 401, and nothing is left."""
    client = app.test_client()
    admin, ada = auth.admin(client=client), auth.register(client=client)
    ada_id = auth.user_id(ada, client=client)
    assert ask(client, ada, "first").status_code == 200  # the usage row is there to be locked
    deleted, statuses = amid_a_deletion(
        app,
        lambda other: ask(other, ada, "a new chat").status_code,
        BURST,
        lambda: client.delete(f"/api/user/{ada_id}", headers=admin).status_code,
        lambda: len(all_messages(app)) > 2,  # the burst's first stored turn
    )
    assert deleted == 200
    assert set(statuses) <= {200, 401}, statuses
    assert all_messages(app) == []
    assert client.get("/api/admin/usage", headers=admin).json["rows"] == []


# --- many new sessions of one user at once, through two gunicorn workers ------------------------


RACERS = 60


@pytest.fixture
def served(tmp_path):
    """Half the racers served at once, the others queued behind them."""
    with gunicorn(tmp_path, {"GUNICORN_THREADS": str(RACERS // 4)}) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/api/ai_chat/request", "/v1/chat/completions"])
def test_concurrent_new_sessions_of_one_user_all_succeed_with_distinct_numbers(served, path):
    """60 new sessions of one user at once, 30 of them served together (a batch of SDK calls
    does this): each gets the next number of the user's counter, none a 503 "Too many
    concurrent new sessions" (which PostgreSQL gave when each computed the highest number plus
    one and the losers of each collision tried again)."""
    base, _ = served
    headers = register_over_http(base)
    if path.startswith("/v1"):
        body = {"model": "echo", "messages": [{"role": "user", "content": "a new chat"}]}
    else:
        body = {"model": "echo", "content": "a new chat"}

    def create():
        response = requests.post(
            base + path, json=body, headers=headers | {"Connection": "close"}, timeout=60
        )
        number = (
            response.headers.get("X-PolyGenix-Session")
            if path.startswith("/v1")
            else (response.json() or {}).get("session_id")
        )
        return response.status_code, number and int(number)

    answers = at_once(create, RACERS, timeout=60)
    assert [status for status, _ in answers] == [200] * RACERS, answers
    assert sorted(number for _, number in answers) == list(range(1, RACERS + 1))
