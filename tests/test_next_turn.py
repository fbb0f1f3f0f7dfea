"""A turn of an existing session: on PostgreSQL one statement sent as its own transaction
(chat/next_turn.py), elsewhere the ORM's transaction. On every database: the usage counted, the
transcript digest grown only from the one the turn knew, nothing stored in a session that is no
longer the turn's (deleted, alone or with the account; its id another user's), and no deadlock
with the deletion of the session or of the account, however many turns race it."""

import itertools
import threading

import pytest
from sqlalchemy import insert, select

from polygenix.chat import transcript
from polygenix.extensions import db
from polygenix.models import ChatSession, Message
from tests.helpers import (
    TEST_DATABASE_URL,
    amid_a_deletion,
    ask,
    assert_envelope,
    counted_transactions,
    in_thread,
    usage_rows,
    wait_for,
    warm_up,
)


@pytest.fixture
def app(provider_app):
    """The turns whose store a test races are the fake provider's; the others echo."""
    return provider_app


def stored(app):
    """(user id, session number, content) of every message, in order."""
    with app.app_context():
        query = select(ChatSession.user_id, ChatSession.number, Message.content).join(
            ChatSession, Message.session_id == ChatSession.id
        )
        return [tuple(row) for row in db.session.execute(query.order_by(Message.id))]


def asked(app, content) -> bool:
    """Whether a question `content` is stored."""
    with app.app_context():
        query = select(Message.id).where(Message.content == content).limit(1)
        return db.session.scalar(query) is not None


def digest(app, number):
    with app.app_context():
        return db.session.scalar(
            select(ChatSession.transcript_digest).where(ChatSession.number == number)
        )


def calls(client, headers) -> dict[str, int]:
    return {row["model"]: row["calls"] for row in usage_rows(client, headers)}


def provider_call_held(app, fake, headers, content="slow", number=1):
    """A turn of session `number` whose provider answers once the returned event is set; the
    function that waits for its response."""
    held = threading.Event()
    fake.reply(hold=held)
    finished = in_thread(
        lambda: ask(app.test_client(), headers, content, "openai", session_id=number)
    )
    wait_for(lambda: fake.requests, what="the provider call")
    return held, finished


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL's data-modifying WITH")
def test_a_turn_of_an_existing_session_is_stored_by_one_statement_on_postgresql(app, client, ada):
    """The user's row locked, the usage added, the session touched and both messages inserted
    by one statement, its own transaction: no BEGIN or COMMIT round trip, no row held after."""
    assert ask(client, ada, "first", session_id=1).status_code == 200
    warm_up(client, ada)
    with counted_transactions(app) as transactions:
        response = ask(client, ada, "second", session_id=1)
    assert response.status_code == 200
    [store] = [t for t in transactions if any("UPDATE chat_sessions" in s for s in t)]
    assert len(store) == 1 and store[0].startswith("WITH")
    for marker in ("FOR KEY SHARE", "INSERT INTO usage_daily", "UPDATE chat_sessions"):
        assert marker in store[0]
    assert store[0].count("INSERT INTO messages") == 2
    written = ("INSERT INTO usage_daily", "UPDATE chat_sessions", "INSERT INTO messages")
    others = [s for t in transactions if t != store for s in t]
    assert not [s for s in others if any(w in s for w in written)]
    messages = client.get("/api/ai_chat/1", headers=ada).json["messages"]
    assert [(m["is_bot"], m["content"]) for m in messages] == [
        (False, "first"),
        (True, "Echo: first"),
        (False, "second"),
        (True, "Echo: second"),
    ]
    assert messages[-1]["id"] == response.json["id"]
    assert response.json["session_id"] == 1
    assert calls(client, ada) == {"echo/echo": 2}


def test_the_transcript_digest_grows_by_each_whole_turn(app, client, ada):
    """A /v1 client re-sending the conversation then finds the session it continues."""
    for content in ("one", "two"):
        assert ask(client, ada, content, session_id=1).status_code == 200
    turns = [
        ("user", "one"),
        ("assistant", "Echo: one"),
        ("user", "two"),
        ("assistant", "Echo: two"),
    ]
    assert digest(app, 1) == transcript.extend(None, turns)
    resent = [{"role": role, "content": text} for role, text in turns]
    response = client.post(
        "/v1/chat/completions",
        headers=ada,
        json={"model": "echo", "messages": [*resent, {"role": "user", "content": "three"}]},
    )
    assert response.status_code == 200
    assert response.headers["X-PolyGenix-Session"] == "1"


def test_a_failed_turn_is_stored_flagged_and_leaves_the_digest_as_it_was(app, client, fake, ada):
    assert ask(client, ada, "one", session_id=1).status_code == 200
    before = digest(app, 1)
    fake.reply(status=400, body={"error": {"message": "bad request", "type": "invalid"}})
    assert ask(client, ada, "two", "openai", session_id=1).status_code >= 400
    messages = client.get("/api/ai_chat/1", headers=ada).json["messages"]
    assert [(m["content"], m["failed"]) for m in messages] == [
        ("one", False),
        ("Echo: one", False),
        ("two", True),
    ]
    assert digest(app, 1) == before


def test_a_digest_changed_by_a_concurrent_turn_becomes_unknown(app, client, fake, ada):
    """A turn whose session got another turn meanwhile cannot extend the digest it knew: the
    session's transcript is no longer one an OpenAI client could have been sent."""
    assert ask(client, ada, "one", session_id=1).status_code == 200
    held, finished = provider_call_held(app, fake, ada)
    assert ask(client, ada, "quick", session_id=1).status_code == 200
    grown = transcript.extend(
        None,
        [
            ("user", "one"),
            ("assistant", "Echo: one"),
            ("user", "quick"),
            ("assistant", "Echo: quick"),
        ],
    )
    assert digest(app, 1) == grown
    held.set()
    assert finished().status_code == 200
    assert digest(app, 1) is None
    assert [m[2] for m in stored(app)][-2:] == ["slow", "Hello from gpt-4.1-mini"]


def test_a_session_deleted_while_the_provider_answers_stores_nothing_but_its_usage(
    app, client, fake, ada
):
    assert ask(client, ada, "one", session_id=1).status_code == 200
    held, finished = provider_call_held(app, fake, ada)
    assert client.delete("/api/ai_chat/1", headers=ada).status_code == 200
    held.set()
    assert_envelope(finished(), 404, "Chat session not found")
    assert stored(app) == []
    assert calls(client, ada) == {"echo/echo": 1, "openai/gpt-4.1-mini": 1}


def test_an_account_deleted_while_the_provider_answers_keeps_nothing(app, client, fake, auth):
    admin, ada = auth.admin(), auth.register()
    ada_id = auth.user_id(ada)
    assert ask(client, ada, "one", session_id=1).status_code == 200
    held, finished = provider_call_held(app, fake, ada)
    assert client.delete(f"/api/user/{ada_id}", headers=admin).status_code == 200
    held.set()
    assert_envelope(finished(), 401, "The account no longer exists")
    assert stored(app) == []
    assert client.get("/api/admin/usage", headers=admin).json["rows"] == []


def test_a_session_id_now_another_users_gets_nothing_of_the_turn(app, client, fake, auth):
    """The row the turn touches must still be its user's session of that number: another
    user's session that took its id and number meanwhile (restored from a backup, say) is left
    as it was."""
    ada, eve = auth.register("ada@example.com"), auth.register("eve@example.com")
    assert ask(client, ada, "ada's", session_id=1).status_code == 200
    assert ask(client, eve, "eve's", session_id=7).status_code == 200
    with app.app_context():
        session_id = db.session.scalar(select(ChatSession.id).where(ChatSession.number == 1))
        eve_id = db.session.scalar(select(ChatSession.user_id).where(ChatSession.number == 7))
    held, finished = provider_call_held(app, fake, ada)
    assert client.delete("/api/ai_chat/1", headers=ada).status_code == 200
    with app.app_context():
        db.session.execute(
            insert(ChatSession).values(id=session_id, user_id=eve_id, number=1, title="eve's")
        )
        db.session.commit()
    before = client.get("/api/ai_chat/1", headers=eve).json
    held.set()
    assert_envelope(finished(), 404, "Chat session not found")
    assert client.get("/api/ai_chat/1", headers=eve).json == before
    assert stored(app) == [(eve_id, 7, "eve's"), (eve_id, 7, "Echo: eve's")]


# --- many turns at once, racing the deletion of their session and of their account ----------

RACERS = 16
SEEDED = 10_000  # messages a session's deletion cascades to: it holds the session's row so long


def seed(app, user_id: int, number: int) -> None:
    with app.app_context():
        session_id = db.session.scalar(
            select(ChatSession.id).where(
                ChatSession.user_id == user_id, ChatSession.number == number
            )
        )
        rows = [
            {"session_id": session_id, "is_bot": n % 2 == 1, "content": f"seeded {n}"}
            for n in range(SEEDED)
        ]
        db.session.execute(insert(Message), rows)
        db.session.commit()


@pytest.fixture(params=["plain", "budget"])
def racing_app(request, make_app, provider_config):
    """Turns as fast as they come: no rate limit in the way. With a token budget, each turn
    releases its reservation, so it is stored by commit.py's transaction (as every turn that
    is not plain: tool results, attachments, retries), not by next_turn.py's statement."""
    config = provider_config | {"CHAT_RATE_LIMIT": "100000/minute"}
    # A connection for each racer and each deletion: on a loaded machine the session's deletion
    # (SEEDED messages) took over DB_POOL_TIMEOUT, and racers queued for the pool meanwhile
    # answered 503 (a pool timeout, not the deadlock this race is about).
    config |= {"DB_MAX_OVERFLOW": RACERS}
    if request.param == "budget":
        config |= {"TOKEN_BUDGET": "100000000/day"}
    return make_app(config)


@pytest.mark.parametrize("round_", range(3))
def test_an_account_deleted_amid_turns_of_its_sessions_never_deadlocks(racing_app, auth, round_):
    """Turns of a user's two sessions, one after another in each of many threads, race the
    deletion of one session and, meanwhile, of the account: every turn is stored or answers
    401/404, both deletions succeed, and nothing is left.

    The account's deletion locks the user's row, then deletes their sessions (and messages),
    then their usage rows. A turn that added to its usage row, then waited for its session
    (held by the session's deletion), would hold the usage row the account's deletion wants
    next while waiting for a session it holds: PostgreSQL's deadlock error, on one side or
    the other, unless every turn locks the user's row first. Half the turns add to one usage
    row, half make one of their own (another model), which locks the user's row too."""
    app = racing_app
    client = app.test_client()
    admin, ada = auth.admin(client=client), auth.register(client=client)
    ada_id = auth.user_id(ada, client=client)
    for number in (1, 2):  # the usage row is there to be locked
        assert ask(client, ada, "first", session_id=number).status_code == 200
    seed(app, ada_id, 1)
    racers = itertools.count()

    def turns(other):
        n, statuses = next(racers), []
        for k in range(20):
            model = "echo" if n % 2 else f"openai/racer-{n}-{k}"
            statuses.append(ask(other, ada, "next", model, session_id=1 + k % 2).status_code)
            if statuses[-1] == 401:
                break
        return statuses

    def delete():  # one session, and meanwhile the account
        session_deleted = in_thread(
            lambda: client.delete("/api/ai_chat/1", headers=ada).status_code
        )
        account_deleted = app.test_client().delete(f"/api/user/{ada_id}", headers=admin)
        return session_deleted(), account_deleted.status_code

    (session_deleted, account_deleted), outcomes = amid_a_deletion(
        app, turns, RACERS, delete, lambda: asked(app, "next")
    )
    assert account_deleted == 200
    assert session_deleted in (200, 401, 404)  # 401, 404: after the account went
    statuses = [status for racer in outcomes for status in racer]
    assert set(statuses) <= {200, 401, 404}, statuses
    assert stored(app) == []
    assert client.get("/api/admin/usage", headers=admin).json["rows"] == []
