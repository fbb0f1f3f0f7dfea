"""A Responses call's claim of its retry key (responses_retries.py), made before the provider
call: on PostgreSQL one statement sent as its own transaction, let go of (one `DELETE`) when
the call is refused before the provider is called. On every database: a retry of an answered
call is answered from its record, copies of a call sent at once call the provider once, a
refused call's key is answered anew; on PostgreSQL, an account deleted under the claim is a
401 and a claim the database gives up on is a 503, with nothing left behind."""

import threading

import pytest
from sqlalchemy import create_engine, func, select, text

from polygenix.extensions import db
from polygenix.models import ChatSession, Message, StoredResponse, UsageDaily
from tests.helpers import (
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    at_once,
    counted_transactions,
    in_thread,
    sessions,
    stored_responses,
    wait_for,
    warm_up,
)

SESSION = "X-PolyGenix-Session"
HELLO = "Hello from gpt-4.1-mini"
FIRST, RETRY = {"X-Stainless-Retry-Count": "0"}, {"X-Stainless-Retry-Count": "1"}
on_postgresql = pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL's one statement")


@pytest.fixture
def app(provider_app):
    return provider_app


def respond(client, headers, **fields):
    return client.post("/v1/responses", headers=headers, json={"model": "openai"} | fields)


def complete(client, headers, content):
    body = {"model": "openai", "messages": [{"role": "user", "content": content}]}
    return client.post("/v1/chat/completions", headers=headers, json=body)


def round_trips(transactions) -> int:
    """The round trips of the transactions `counted_transactions(app, alone=True)` saw: a
    statement each, and a BEGIN and a COMMIT (or ROLLBACK) for one not sent in autocommit."""
    return sum(len(t) + (0 if all(alone for _, alone in t) else 2) for t in transactions)


def claims(transactions) -> list[tuple[str, bool]]:
    """The statements that claimed a retry key (or found the call's earlier attempt), each
    with whether it was sent in autocommit."""
    return [(s, alone) for t in transactions for s, alone in t if "ON CONFLICT (retry_key)" in s]


def counts(app) -> tuple[int, int, int, int]:
    """Rows of every table a turn writes: sessions, messages, records, usage."""
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(model))
            for model in (ChatSession, Message, StoredResponse, UsageDaily)
        )


# --- one statement on PostgreSQL ---------------------------------------------------------------

# PostgreSQL's round trips of an SDK call, with Redis: the caller's lookup, the claim, (a
# continuation's chain,) the store's statement; without Redis one more (the rate limit's
# upsert, sent alone).
NEW_CONVERSATION, CONTINUATION = 3, 4


@on_postgresql
def test_an_sdk_calls_claim_is_one_statement_sent_alone(app, client, ada, fake):
    """An SDK call's new conversation and its continuation: one round trip more than a chat
    completion's, the claim's; a retry of it is answered from its record, by the same one
    statement (no claim inserted) and the lookup of its session's number."""
    extra = 0 if TEST_REDIS_URL else 1
    warm_up(client, ada)
    assert complete(client, ada, "warm").status_code == 200
    assert respond(client, ada | FIRST, input="warm").status_code == 200
    with counted_transactions(app, alone=True) as completion:
        assert complete(client, ada, "a chat").status_code == 200
    with counted_transactions(app, alone=True) as response:
        answer = respond(client, ada | FIRST, input="a new chat")
    assert answer.status_code == 200
    [(claim, alone)] = claims(response)
    assert claim.startswith("WITH") and alone  # no BEGIN nor COMMIT around it
    assert "UPDATE responses" in claim and "ON CONFLICT (retry_key) DO NOTHING" in claim
    assert round_trips(response) == round_trips(completion) + 1 == NEW_CONVERSATION + extra

    number = answer.headers[SESSION]
    in_session = ada | {SESSION: number}
    body = {"input": "next", "previous_response_id": answer.json["id"]}
    assert complete(client, in_session, "warm").status_code == 200
    with counted_transactions(app, alone=True) as completion:
        assert complete(client, in_session, "a turn").status_code == 200
    with counted_transactions(app, alone=True) as response:
        following = respond(client, ada | FIRST, **body)
    assert following.status_code == 200 and following.headers[SESSION] == number
    [(claim, alone)] = claims(response)
    assert claim.startswith("WITH") and alone
    # The chain's one recursive query in place of the chat completion's session lookup.
    assert round_trips(response) == round_trips(completion) + 1 == CONTINUATION + extra

    calls = len(fake.requests)
    with counted_transactions(app, alone=True) as replay:
        again = respond(client, ada | RETRY, **body)
    assert again.status_code == 200 and again.json == following.json
    assert len(fake.requests) == calls and again.headers[SESSION] == number
    # The caller, the chain, the claim's statement and the session's number, each alone, on
    # one connection; without Redis, the rate limit's hit as the request ends (no commit came).
    counted = [] if TEST_REDIS_URL else [[False]]
    assert [[alone for _, alone in t] for t in replay] == [[True] * 4, *counted]
    assert claims(replay) == [replay[0][2]]  # after the caller and the chain


@on_postgresql
def test_a_failed_calls_key_is_taken_over_by_the_one_statement(app, client, ada, fake):
    fake.reply(500, {"error": {"message": "down"}}, times=3)
    failed = respond(client, ada | RETRY, input="again")
    assert failed.status_code == 502
    with counted_transactions(app, alone=True) as transactions:
        answer = respond(client, ada | RETRY, input="again")
    assert answer.status_code == 200 and answer.headers[SESSION] == failed.headers[SESSION]
    [(claim, alone)] = claims(transactions)
    assert alone
    old, new = stored_responses(app)
    assert old.body["status"] == "failed" and old.retry_key is None
    assert new.public_id == answer.json["id"] and new.retry_key is not None


# --- refused before the provider call -----------------------------------------------------------


@pytest.mark.parametrize("keyed", [FIRST, RETRY, {"Idempotency-Key": "refused"}])
def test_a_call_refused_after_its_claim_lets_go_of_it(app, client, ada, auth, fake, keyed):
    """A model the user may not use is refused after the claim (the preparation's check): the
    claim goes, by one DELETE sent alone on PostgreSQL; the same call, once allowed, is
    answered anew."""
    admin = auth.admin()
    limits = f"/api/admin/users/{auth.user_id(ada)}/limits"
    assert client.put(limits, headers=admin, json={"models": ["groq/*"]}).status_code == 200
    with counted_transactions(app, alone=True) as transactions:
        refused = respond(client, ada | keyed, input="not yet")
    assert refused.status_code == 403, refused.json
    assert stored_responses(app) == [] and fake.requests == []
    released = [t for t in transactions if any(s.startswith("DELETE FROM responses") for s, _ in t)]
    assert len(released) == 1
    if TEST_DATABASE_URL:
        assert [alone for _, alone in released[0]] == [True]
    assert client.put(limits, headers=admin, json={"models": None}).status_code == 200
    answer = respond(client, ada | keyed, input="not yet")
    assert answer.status_code == 200 and answer.json["status"] == "completed"
    [row] = stored_responses(app)
    assert row.public_id == answer.json["id"] and row.reply_id is not None
    again = respond(client, ada | (RETRY if keyed is FIRST else keyed), input="not yet")
    assert again.status_code == 200 and again.json == answer.json
    assert len(fake.requests) == 1


# --- copies at once ---------------------------------------------------------------------------


COPIES = 8


@pytest.mark.parametrize("keyed", [RETRY, {"Idempotency-Key": "copies"}])
def test_copies_of_a_call_at_once_call_the_provider_once(app, client, ada, fake, keyed):
    """Copies of one call sent at once (retries, or one Idempotency-Key): one claims the key
    and is answered, the others are told it is under way (409); a copy after is answered from
    its record."""
    release = threading.Event()
    fake.reply(hold=release)

    def call():
        return respond(app.test_client(), ada | keyed, input="copied")

    first = in_thread(call)
    wait_for(lambda: fake.requests, what="a copy at the provider")
    others = at_once(call, COPIES)
    release.set()
    answer = first()
    assert answer.status_code == 200
    assert [o.status_code for o in others] == [409] * COPIES
    assert {o.json["error"]["code"] for o in others} == {"request_in_progress"}
    after = call()
    assert after.status_code == 200 and after.json == answer.json
    assert len(fake.requests) == 1 and len(stored_responses(app)) == 1


def test_first_attempts_sent_at_once_are_each_answered(app, client, ada, fake):
    """The SDK's first attempts of one body at once are so many calls (a count of 0 is a new
    call): one holds the key, the others go on without it; each is answered and stored."""
    answers = at_once(lambda: respond(app.test_client(), ada | FIRST, input="same"), COPIES)
    assert [a.status_code for a in answers] == [200] * COPIES
    rows = stored_responses(app)
    assert len(rows) == COPIES and sum(r.retry_key is not None for r in rows) == 1
    assert len(sessions(client, ada)) == COPIES


# --- the database under the claim (PostgreSQL) --------------------------------------------------


def _waiting_on_a_lock(app) -> bool:
    with app.app_context():
        engine = db.engine
    with engine.connect() as connection:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE 'WITH found%'"
            )
        ).scalar()
    return waiting > 0


@on_postgresql
def test_an_account_deleted_under_the_claim_is_a_401_and_leaves_nothing(
    app, client, ada, auth, postgres_url
):
    """The account's deletion holds the user's row while the claim's insert checks its
    foreign key: once the deletion commits, the call answers 401, as a call whose store finds
    the account gone does, and nothing is left."""
    user_id = auth.user_id(ada)
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as deleting:
            deleting.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})
            later = in_thread(lambda: respond(app.test_client(), ada | FIRST, input="bye"))
            wait_for(lambda: _waiting_on_a_lock(app), what="the claim waiting")
            deleting.commit()
        answer = later()
    finally:
        engine.dispose()
    assert answer.status_code == 401, answer.json
    assert answer.json["error"]["message"] == "The account no longer exists"
    assert counts(app) == (0, 0, 0, 0)


@on_postgresql
def test_a_claim_the_database_gives_up_on_is_a_503_and_its_key_is_retried(
    make_app, provider_config, auth, fake, postgres_url
):
    """The claim's statement waits on a lock past DB_STATEMENT_TIMEOUT (the row of the call's
    failed attempt, held elsewhere): the server cancels it, the call is a 503 and nothing is
    claimed; the retry after is answered in the failed attempt's session."""
    app = make_app(provider_config | {"DB_STATEMENT_TIMEOUT": 1})
    client = app.test_client()
    ada = auth.register(client=client)
    keyed = ada | {"Idempotency-Key": "held"}
    fake.reply(500, {"error": {"message": "down"}}, times=3)
    failed = respond(client, keyed, input="wait")
    assert failed.status_code == 502
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as holding:
            holding.execute(text("SELECT id FROM responses FOR UPDATE"))
            cut = respond(client, keyed, input="wait")
            holding.rollback()
    finally:
        engine.dispose()
    assert cut.status_code == 503 and cut.json["error"]["message"] == "Database unavailable"
    [row] = stored_responses(app)
    assert row.body["status"] == "failed" and row.retry_key is not None
    answer = respond(client, keyed, input="wait")
    assert answer.status_code == 200 and answer.headers[SESSION] == failed.headers[SESSION]
    assert [m for _, m in sessions(client, ada)] == [["wait", HELLO]]
