"""A budget's reservation released with the turn whose call it held for: on PostgreSQL a part of
the one statement that stores a plain turn (chat/first_turn.py, chat/next_turn.py), sent as its
own transaction as an unbudgeted turn's is, so a user with a budget pays for the store no round
trip more than one without; elsewhere (the ORM's transaction, a call whose turn is not stored)
the user's row held, the usage counted and the reservation released by one statement
(charging.settle). On every database: released exactly once and the usage counted once, the
session or the account gone meanwhile or not."""

import threading
from contextlib import contextmanager

import pytest
from sqlalchemy import event, func, select

from polygenix.extensions import db
from polygenix.models import BudgetReservation
from tests.helpers import (
    SESSION,
    TEST_DATABASE_URL,
    ask,
    complete,
    fake_provider_app,
    in_thread,
    on_postgresql,
    respond,
    row_counts,
    store_of,
    stream,
    usage_rows,
    wait_for,
    warm_up,
    write_transactions,
)

app = fake_provider_app
RELEASE = "DELETE FROM budget_reservations"
RESERVE = "INSERT INTO budget_reservations"
STORE = "INSERT INTO messages"  # a turn's store inserts its question


@pytest.fixture
def admin(auth):
    return auth.admin()


@pytest.fixture
def budgeted(client, auth, admin, ada):
    """`ada`, given a token budget no test reaches: each call of hers reserves, none is refused."""
    limits = {"token_budget": "100000000/day"}
    put = client.put(f"/api/admin/users/{auth.user_id(ada)}/limits", headers=admin, json=limits)
    assert put.status_code == 200
    return ada


def held(app) -> int:
    """The reservations left."""
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(BudgetReservation))


@contextmanager
def kept_releases(app):
    """The release statements `app` sends inside the block that were kept: sent alone (in
    autocommit, PostgreSQL) or in a transaction that committed, as a list filled in as they are
    kept. A release its transaction rolled back (the session found gone, say) is not one."""
    kept: list[str] = []
    running: dict[int, list[str]] = {}
    with app.app_context():
        engine = db.engine

    def statement(conn, cursor, text, *_args):
        if RELEASE not in text:
            return
        if getattr(cursor.connection, "autocommit", None) is True:
            kept.append(text)
        else:
            running.setdefault(id(conn), []).append(text)

    def committed(conn):
        kept.extend(running.pop(id(conn), []))

    def rolled_back(conn):
        running.pop(id(conn), None)

    listeners = [
        ("before_cursor_execute", statement),
        ("commit", committed),
        ("rollback", rolled_back),
    ]
    for name, listener in listeners:
        event.listen(engine, name, listener)
    try:
        yield kept
    finally:
        for name, listener in listeners:
            event.remove(engine, name, listener)


def calls(client, headers) -> int:
    return sum(row["calls"] for row in usage_rows(client, headers))


def shape(transactions) -> list[list[bool]]:
    """Each write transaction as its statements' autocommit flags: [True] is one statement sent
    alone (one round trip), [False] * n is n statements between `BEGIN` and `COMMIT` (n + 2)."""
    return [[alone for _, alone in t] for t in transactions]


def round_trips(transactions) -> int:
    return sum(len(t) + (0 if all(alone for _, alone in t) else 2) for t in transactions)


def first_then(client, headers, kind):
    """What `kind` of request needs made first (its session, the response it continues), then
    the request itself as a function of nothing."""
    if kind == "native, a new session":
        return lambda: ask(client, headers, "a question")
    if kind == "native, an existing session":
        assert ask(client, headers, "first", session_id=1).status_code == 200
        return lambda: ask(client, headers, "a question", session_id=1)
    if kind == "/v1 chat completion, a new conversation":
        return lambda: complete(client, headers, "a question")
    if kind == "/v1 chat completion, an existing session":
        number = complete(client, headers, "first").headers[SESSION]
        return lambda: complete(client, headers | {SESSION: number}, "a question")
    if kind == "/v1 response, a new conversation":
        return lambda: respond(client, headers, input="a question")
    first = respond(client, headers, input="first").json["id"]
    return lambda: respond(client, headers, input="a question", previous_response_id=first)


KINDS = [
    "native, a new session",
    "native, an existing session",
    "/v1 chat completion, a new conversation",
    "/v1 chat completion, an existing session",
    "/v1 response, a new conversation",
    "/v1 response, a continuation",
]


@pytest.mark.parametrize("kind", KINDS)
def test_a_budgeted_plain_turn_stores_as_an_unbudgeted_one(app, client, budgeted, bob, kind):
    """The same request of a user without a budget and of one with: the budgeted one's write
    transactions are the other's and its reservation's, the release a part of the store's
    statement (PostgreSQL) or of its transaction (SQLite); none is left, the usage counted."""
    measured = {}
    for name, headers in (("budget", budgeted), ("none", bob)):
        warm_up(client, headers)
        request = first_then(client, headers, kind)
        with write_transactions(app) as transactions:
            assert request().status_code == 200
        measured[name] = transactions
    store, unbudgeted = (store_of(measured[name], STORE) for name in ("budget", "none"))
    if TEST_DATABASE_URL:
        [(statement, alone)] = store
        assert statement.startswith("WITH") and alone  # no BEGIN nor COMMIT around it
        assert RELEASE in statement and "INSERT INTO usage_daily" in statement
        assert shape([unbudgeted]) == [[True]]
        # All it writes but its reservation (the preparation's transaction of its own).
        reserved = [t for t in measured["budget"] if any(s.startswith(RESERVE) for s, _ in t)]
        others = [t for t in measured["budget"] if t not in reserved]
        assert len(reserved) == 1 and shape(others) == shape(measured["none"])
        assert round_trips(others) == round_trips(measured["none"])
    else:  # the release one more statement of the store's transaction
        assert [s for s, _ in store if not s.startswith(RELEASE)] == [s for s, _ in unbudgeted]
        assert len(store) == len(unbudgeted) + 1
    assert held(app) == 0
    assert calls(client, budgeted) == calls(client, bob)


@on_postgresql
def test_a_failed_budgeted_turn_releases_in_its_statement(app, client, budgeted, fake):
    """The provider refused: no usage to count, the question stored flagged, and the
    reservation released by the statement that stores it, the user's row held first."""
    assert ask(client, budgeted, "first", session_id=1).status_code == 200
    fake.reply(status=400, body={"error": {"message": "bad request", "type": "invalid"}})
    with write_transactions(app) as transactions:
        assert ask(client, budgeted, "refused", "openai", session_id=1).status_code >= 400
    [[(statement, alone)]] = [t for t in transactions if any(RELEASE in s for s, _ in t)]
    assert alone and statement.startswith("WITH owner") and "FOR KEY SHARE" in statement
    assert "INSERT INTO messages" in statement and "usage_daily" not in statement
    assert held(app) == 0 and calls(client, budgeted) == 1


@on_postgresql
def test_the_orms_transaction_counts_and_releases_by_one_statement(app, client, budgeted):
    """A regenerate (stored by the ORM's transaction): after `BEGIN`, one statement holds the
    user's row, adds the usage and releases the reservation, where it was three."""
    assert ask(client, budgeted, "first", session_id=1).status_code == 200
    with write_transactions(app) as transactions:
        again = client.post("/api/ai_chat/1/regenerate", headers=budgeted, json={"model": "echo"})
        assert again.status_code == 200
    [store] = [t for t in transactions if any(RELEASE in s for s, _ in t)]
    settle = store[0][0]
    assert settle.startswith("WITH owner") and "FOR KEY SHARE" in settle
    assert "INSERT INTO usage_daily" in settle and RELEASE in settle
    assert not any(alone for _, alone in store)
    assert not any(RELEASE in s or "usage_daily" in s for s, _ in store[1:])
    assert held(app) == 0 and calls(client, budgeted) == 2


@on_postgresql
def test_a_budgeted_streams_end_counts_and_releases_by_one_statement_alone(app, client, budgeted):
    """A stream's end counts its usage by a transaction of its own before it stores its reply:
    with a budget, that one statement releases the reservation too, sent alone."""
    assert ask(client, budgeted, "first", session_id=1).status_code == 200
    with write_transactions(app) as transactions:
        response = stream(client, budgeted, "echo", "streamed", session_id=1)
        assert b"event: done" in response.data
    [[(statement, alone)]] = [t for t in transactions if any(RELEASE in s for s, _ in t)]
    assert alone and statement.startswith("WITH owner") and "INSERT INTO usage_daily" in statement
    assert held(app) == 0 and calls(client, budgeted) == 2


def test_a_budgeted_turn_whose_session_went_meanwhile_releases_once(app, client, budgeted, fake):
    """The session deleted while the provider answers: nothing stored, a 404, the usage
    counted and the reservation released, by the statement that found the session gone
    (PostgreSQL) or the ORM's transaction after it."""
    assert ask(client, budgeted, "first", session_id=1).status_code == 200
    release = threading.Event()
    fake.reply(hold=release)
    later = in_thread(lambda: ask(app.test_client(), budgeted, "slow", "openai", session_id=1))
    wait_for(lambda: fake.requests, what="the provider call")
    assert held(app) == 1
    with kept_releases(app) as released:  # from the reservation on
        assert client.delete("/api/ai_chat/1", headers=budgeted).status_code == 200
        release.set()
        assert later().status_code == 404
    # Not merely none left: a second release (the request's teardown, say) would be one more
    # statement kept, that deleted nothing.
    assert len(released) == 1
    assert held(app) == 0 and calls(client, budgeted) == 2
    assert row_counts(app)[:2] == (0, 0)  # no session nor message


@pytest.mark.parametrize("existing", [False, True])
def test_a_budgeted_turn_whose_account_went_meanwhile_leaves_nothing(
    app, client, auth, admin, budgeted, fake, existing
):
    """The account deleted while the provider answers (its reservation with it): the store
    finds no user, writes nothing and answers 401, as every later request with the token does."""
    if existing:
        assert ask(client, budgeted, "first", session_id=1).status_code == 200
    user_id = auth.user_id(budgeted)
    release = threading.Event()
    fake.reply(hold=release)
    number = {"session_id": 1} if existing else {}
    later = in_thread(lambda: ask(app.test_client(), budgeted, "bye", "openai", **number))
    wait_for(lambda: fake.requests, what="the provider call")
    assert client.delete(f"/api/user/{user_id}", headers=admin).status_code == 200
    release.set()
    gone = later()
    assert gone.status_code == 401 and gone.json["message"] == "The account no longer exists"
    assert held(app) == 0 and row_counts(app) == (0, 0, 0, 0)
