"""An account deleted while a burst of its streamed turns begin and end: plain streams, streamed
/v1/responses (whose end writes the stored response's record), streams with attachments, and
streamed regenerates and edits (which attach at their start or end). The deletion locks the
user's row, then deletes their sessions, messages, usage and the rest; a stream's store that
touched its session before it wrote a row whose foreign key needs the user's row (a response
record, an attachment) would wait for the deletion while holding the session it waits for:
PostgreSQL's deadlock error, a 503 on one side, unless every such transaction holds the user's
row first. Every stream ends as documented (`done`, or its account gone: a 401), every request
after the deletion is a 401, the deletion succeeds, and nothing of the account is left."""

import io
import itertools
import threading

import pytest
from sqlalchemy import delete, func, select, text
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from polygenix.attachments.models import Attachment
from polygenix.extensions import db
from polygenix.models import (
    BudgetReservation,
    ChatSession,
    Message,
    StoredResponse,
    UsageDaily,
    User,
)
from tests import images
from tests.helpers import (
    TEST_DATABASE_URL,
    amid_a_deletion,
    ask,
    counted_transactions,
    in_thread,
    read_events,
    stream,
    wait_for,
)

RACERS = 12
TURNS = 20  # each racer's turns, one after another, until its account is gone
ROUNDS = 3


@pytest.fixture(params=["plain", "budget"])
def racing_app(request, make_app, provider_config):
    """Turns as fast as they come. With a token budget each stream also releases its
    reservation as it ends."""
    config = provider_config | {"CHAT_RATE_LIMIT": "100000/minute"}
    config |= {"DB_MAX_OVERFLOW": RACERS}  # a connection for each racer and the deletion
    if request.param == "budget":
        config |= {"TOKEN_BUDGET": "100000000/day"}
    return make_app(config)


def left(app) -> dict[str, int]:
    """The rows of each kind an account keeps (the admin keeps none of them)."""
    kinds = [ChatSession, Message, UsageDaily, StoredResponse, Attachment, BudgetReservation]
    with app.app_context():
        return {
            kind.__name__: db.session.scalar(select(func.count()).select_from(kind))
            for kind in kinds
        }


def ended_native(response) -> int | str:
    """A native stream's outcome: 200 (`done`), its error event's code, or the request's (a
    422 with its message: no deletion is the request's fault)."""
    if response.status_code == 422:
        return f"422: {response.json['message']}"
    if response.status_code != 200:
        return response.status_code
    name, data = read_events(response.get_data(as_text=True))[-1]
    return 200 if name == "done" else data["code"]


def ended_response(response) -> int | str:
    """A streamed /v1/responses call's outcome: 200 (`response.completed`), 404 (failed: its
    session went), 401 (failed: its account went), the request's status, or else the failure's
    message."""
    if response.status_code != 200:
        return response.status_code
    name, data = read_events(response.get_data(as_text=True))[-1]
    if name == "response.completed":
        return 200
    message = data["response"]["error"]["message"]
    return {"Chat session not found": 404, "The account no longer exists": 401}.get(
        message, message
    )


def upload(client, headers) -> int | None:
    """An image uploaded: its id, or None once the account is gone."""
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(images.png()), "x.png")})
    response = client.post(
        images.UPLOAD,
        headers=headers,
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert response.status_code in (201, 401), response.json
    return response.json["id"] if response.status_code == 201 else None


def race(app, auth, turn, setup=None) -> None:
    """`turn(client, headers, racer)` (a streamed turn: its outcome) TURNS times in each of
    RACERS threads, until it answers 401, while the account is deleted; `setup(client,
    headers)` first. A turn answers 200 or, once the account is going, 401."""
    client = app.test_client()
    admin, ada = auth.admin(client=client), auth.register(client=client)
    ada_id = auth.user_id(ada, client=client)
    if setup is not None:
        setup(client, ada)
    racers, served = itertools.count(), []

    def turns(other):
        racer, outcomes = next(racers), []
        for _ in range(TURNS):
            outcomes.append(turn(other, ada, racer))
            served.append(True)
            if outcomes[-1] == 401:
                break
        return outcomes

    deleted, outcomes = amid_a_deletion(
        app,
        turns,
        RACERS,
        lambda: client.delete(f"/api/user/{ada_id}", headers=admin).status_code,
        lambda: len(served) >= RACERS,
    )
    assert deleted == 200
    every = [outcome for racer in outcomes for outcome in racer]
    assert set(every) <= {200, 401}, every
    assert all(racer[-1] == 401 or len(racer) == TURNS for racer in outcomes)
    assert left(app) == dict.fromkeys(left(app), 0)


def two_sessions(client, headers) -> None:
    for number in (1, 2):  # the usage row is there to be locked
        assert ask(client, headers, "first", session_id=number).status_code == 200


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_an_account_deleted_amid_its_plain_streams_ending(racing_app, auth, round_):
    def turn(client, headers, racer):
        return ended_native(stream(client, headers, "echo", "next", session_id=1 + racer % 2))

    race(racing_app, auth, turn, two_sessions)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_an_account_deleted_amid_its_streamed_responses_ending(racing_app, auth, round_):
    """Each stream's end writes its response's record (`store` is true by default), whose
    foreign key names the user."""

    def turn(client, headers, racer):
        body = {"model": "echo", "input": "next", "stream": True}
        return ended_response(client.post("/v1/responses", headers=headers, json=body))

    race(racing_app, auth, turn)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_an_account_deleted_amid_its_streams_with_attachments(racing_app, auth, round_):
    """Each stream's question takes an image of the user's as it is stored."""

    def turn(client, headers, racer):
        attachment = upload(client, headers)
        if attachment is None:
            return 401
        response = stream(
            client, headers, "echo", "look", session_id=1 + racer % 2, attachment_ids=[attachment]
        )
        return ended_native(response)

    race(racing_app, auth, turn, two_sessions)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_an_account_deleted_amid_its_streamed_regenerates_and_edits(racing_app, auth, round_):
    """Each racer answers its own session's question again, with an image: a regenerate
    attaches it as its stream ends, an edit as it begins."""
    questions = {}

    def setup(client, headers):
        for number in range(1, RACERS + 1):
            assert ask(client, headers, "first", session_id=number).status_code == 200
            shown = client.get(f"/api/ai_chat/{number}", headers=headers).json["messages"]
            questions[number] = shown[0]["id"]

    def turn(client, headers, racer):
        number = racer + 1
        attachment = upload(client, headers)
        if attachment is None:
            return 401
        body = {"model": "echo", "stream": True, "attachment_ids": [attachment]}
        if racer % 2:
            url = f"/api/ai_chat/{number}/regenerate"
            return ended_native(client.post(url, headers=headers, json=body))
        url = f"/api/ai_chat/{number}/messages/{questions[number]}"
        return ended_native(client.put(url, headers=headers, json=body | {"content": "again"}))

    race(racing_app, auth, turn, setup)


# --- which statement locks the user's row ---------------------------------------------------

on_postgresql = pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL's row locks")


def stores(transactions) -> list[list[str]]:
    """The transactions that stored a turn's question."""
    return [t for t in transactions if any(s.startswith("INSERT INTO messages") for s in t)]


@on_postgresql
def test_a_new_session_held_by_its_counter_holds_the_users_row_no_more(
    make_app, provider_config, auth
):
    """A new session stored row by row (it brings an image), its usage added and its
    reservation released: the counter's UPDATE, its first statement, locks the user's row."""
    app = make_app(provider_config | {"TOKEN_BUDGET": "100000000/day"})
    client = app.test_client()
    ada = auth.register(client=client)
    attachment = upload(client, ada)
    with counted_transactions(app) as transactions:
        assert ask(client, ada, "look", attachment_ids=[attachment]).status_code == 200
    (store,) = stores(transactions)
    assert store[0].startswith("UPDATE users SET last_session_number")
    assert not any("FOR KEY SHARE" in statement for statement in store)


@on_postgresql
def test_a_streams_end_touches_its_session_behind_the_users_row(racing_app, auth):
    """A stream's last transaction: its first statement, the session's touch, locks the user's
    row before the session's."""
    client = racing_app.test_client()
    ada = auth.register(client=client)
    assert ask(client, ada, "first", session_id=1).status_code == 200
    with counted_transactions(racing_app) as transactions:
        assert ended_native(stream(client, ada, "echo", "next", session_id=1)) == 200
    last = [t for t in transactions if any("lease_token=" in s for s in t)][-1]
    touch = next(s for s in last if not s.startswith("SELECT"))
    assert touch.startswith("UPDATE chat_sessions") and "FOR KEY SHARE" in touch


@on_postgresql
def test_a_streamed_responses_end_waits_behind_a_deletion_holding_nothing(
    make_app, provider_config, fake, auth
):
    """An account's deletion taken step by step on a connection of the test's: the user's row
    locked (`DELETE FROM users` locks it first), then, once a streamed response's end waits
    behind it, the user's sessions deleted (the cascade's first step) and the user. Had the
    stream's end held its session (its touch) before the user's row, which its record's foreign
    key then waits for, that DELETE would wait for it in turn: PostgreSQL's deadlock, one side
    its victim (a 503), as the race above saw now and then. Its touch waits for the user's row
    first, holding nothing, and the stream ends with its account gone."""
    app = make_app(provider_config)
    client = app.test_client()
    ada = auth.register(client=client)
    ada_id = auth.user_id(ada, client=client)
    body = {"model": "openai", "input": "next", "stream": True}
    # The day's usage row there: the stream's usage, added first, is its UPDATE (no foreign key
    # checked, so it passes the deletion's lock on the user's row).
    assert ended_response(client.post("/v1/responses", headers=ada, json=body)) == 200
    release = threading.Event()
    fake.reply(pause=release)  # the stream begins, then holds its last chunk back
    answer = in_thread(
        lambda: ended_response(app.test_client().post("/v1/responses", headers=ada, json=body))
    )
    with app.app_context(), db.engine.connect() as deletion, db.engine.connect() as watch:
        leased = select(func.count()).where(Message.lease_token.is_not(None))
        wait_for(lambda: watch.execute(leased).scalar() == 1, what="the stream's start stored")
        watch.commit()
        deletion.execute(text("SET LOCAL lock_timeout = '5s'"))  # a wait fails, never hangs
        deletion.execute(select(User.id).where(User.id == ada_id).with_for_update())
        pid = deletion.execute(text("SELECT pg_backend_pid()")).scalar()
        blocked = text("SELECT count(*) FROM pg_locks WHERE :pid = ANY(pg_blocking_pids(pid))")
        release.set()
        wait_for(
            lambda: watch.execute(blocked, {"pid": pid}).scalar(),
            timeout=10,
            what="the stream's end waiting for the user's row",
        )
        deletion.execute(delete(ChatSession).where(ChatSession.user_id == ada_id))
        deletion.execute(delete(User).where(User.id == ada_id))
        deletion.commit()
    assert answer() == 401
    assert left(app) == dict.fromkeys(left(app), 0)
