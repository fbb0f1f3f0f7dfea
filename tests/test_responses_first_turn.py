"""A stored response that starts a session: on PostgreSQL its record is a part of the one
statement that stores the new session's first turn (chat/first_turn.py), sent as its own
transaction as a chat completion's is; elsewhere it is written in that turn's transaction. On
every database: the record answers GET, input_items, DELETE and previous_response_id as any
other; an account deleted meanwhile leaves nothing half written; `store: false` writes none."""

import itertools
import threading

import pytest
from sqlalchemy import delete, select

from polygenix.extensions import db
from polygenix.models import ChatSession, Message, StoredResponse
from tests.helpers import (
    HELLO,
    SESSION,
    TEST_DATABASE_URL,
    amid_a_deletion,
    complete,
    fake_provider_app,
    in_thread,
    on_postgresql,
    record,
    respond,
    row_counts,
    said,
    sessions,
    store_of,
    stored_responses,
    usage_rows,
    wait_for,
    warm_up,
    write_transactions,
)

app = fake_provider_app
NEW_SESSION = "SET last_session_number"  # the store of a new session counts the user's counter up


# --- one statement on PostgreSQL ---------------------------------------------------------------


@on_postgresql
def test_a_stored_responses_first_turn_is_one_statement_like_a_chat_completions(app, client, ada):
    warm_up(client, ada)
    assert complete(client, ada, "warm").status_code == 200
    assert respond(client, ada, input="warm").status_code == 200
    with write_transactions(app) as completion:
        assert complete(client, ada, "a chat").status_code == 200
    with write_transactions(app) as response:
        answer = respond(client, ada, input="a new chat", metadata={"k": "é \u2028 😀"})
    assert answer.status_code == 200
    [(statement, alone)] = store_of(response, NEW_SESSION)
    assert statement.startswith("WITH") and alone  # no BEGIN nor COMMIT around it
    for marker in ("UPDATE users", "INSERT INTO chat_sessions", "INSERT INTO usage_daily"):
        assert marker in statement
    assert statement.count("INSERT INTO messages") == 2
    assert statement.count("INSERT INTO responses") == 1
    # No more written than a chat completion's new conversation.
    assert [[a for _, a in t] for t in response] == [[a for _, a in t] for t in completion]

    # The record is the turn's: its question and reply, as answered.
    [row] = [r for r in stored_responses(app) if r.public_id == answer.json["id"]]
    with app.app_context():
        question, reply = db.session.scalars(
            select(Message).where(Message.session_id == row.session_id).order_by(Message.id)
        ).all()
        number = db.session.get(ChatSession, row.session_id).number
    assert (row.question_id, row.reply_id) == (question.id, reply.id)
    assert (question.content, reply.content) == ("a new chat", "Echo: a new chat")
    assert row.previous_id is None and row.retry_key is None and row.created_at is not None
    assert answer.headers[SESSION] == str(number)
    kept = client.get(f"/v1/responses/{answer.json['id']}", headers=ada)
    assert kept.status_code == 200 and kept.data == answer.data


# A call's retry key: its client's Idempotency-Key (its retry sends the same), or, from an official
# SDK, its body's digest (every first attempt sends X-Stainless-Retry-Count: 0, a retry 1).
KEYED = {
    "idempotency-key": ({"Idempotency-Key": "call-1"}, {"Idempotency-Key": "call-1"}),
    "sdk": ({"X-Stainless-Retry-Count": "0"}, {"X-Stainless-Retry-Count": "1"}),
}


@on_postgresql
@pytest.mark.parametrize("keyed", list(KEYED))
def test_a_record_that_claimed_its_retry_key_is_a_part_of_the_one_statement(
    app, client, ada, fake, keyed
):
    """The row that holds the call's retry key is the record: an UPDATE of it, a CTE of the
    statement that stores the turn, sent as its own transaction as a plain one is."""
    first, retry = (ada | h for h in KEYED[keyed])
    warm_up(client, ada)
    assert respond(client, first, model="openai", input="warm").status_code == 200
    with write_transactions(app) as transactions:
        answer = respond(client, first, model="openai", input="keyed")
    assert answer.status_code == 200
    [(statement, alone)] = store_of(transactions, NEW_SESSION)
    assert statement.startswith("WITH") and alone  # no BEGIN nor COMMIT around it
    assert statement.count("UPDATE responses") == 1 and "INSERT INTO responses" not in statement
    row = record(app, answer.json["id"])
    with app.app_context():
        question, reply = db.session.scalars(
            select(Message).where(Message.session_id == row.session_id).order_by(Message.id)
        ).all()
    assert (row.question_id, row.reply_id) == (question.id, reply.id)
    assert row.previous_id is None and row.retry_key is not None
    assert row.body["status"] == "completed" and row.items[0]["content"][0]["text"] == "keyed"
    assert client.get(f"/v1/responses/{answer.json['id']}", headers=ada).data == answer.data
    listed = client.get(f"/v1/responses/{answer.json['id']}/input_items", headers=ada).json
    assert [i["content"][0]["text"] for i in listed["data"]] == ["keyed"]
    again = respond(client, retry, model="openai", input="keyed")
    assert again.status_code == 200 and again.json == answer.json  # answered from the record
    assert len(fake.requests) == 2 and len(stored_responses(app)) == 2  # the warm-up's and this one


@pytest.mark.parametrize("keyed", list(KEYED))
def test_a_claim_deleted_before_the_store_leaves_the_turn_without_its_record(
    app, client, ada, fake, keyed
):
    """The call's claim of its retry key deleted while the provider answers (DELETE
    /v1/responses/{id} does not find a call under way; here the row goes under it): the record,
    an UPDATE of that row, matches none. The turn is stored and answered, its response is not
    found, and a retry is a new call, answered anew."""
    first, retry = (ada | h for h in KEYED[keyed])
    release = threading.Event()
    fake.reply(hold=release)
    later = in_thread(lambda: respond(app.test_client(), first, model="openai", input="gone"))
    wait_for(lambda: fake.requests, what="the provider call")
    [claim] = stored_responses(app)
    assert claim.session_id is None and claim.retry_key is not None
    assert client.delete(f"/v1/responses/{claim.public_id}", headers=ada).status_code == 404
    with app.app_context():
        db.session.execute(delete(StoredResponse).where(StoredResponse.id == claim.id))
        db.session.commit()
    release.set()
    answer = later()
    assert answer.status_code == 200 and answer.json["id"] == claim.public_id
    assert stored_responses(app) == []
    assert [m for _, m in sessions(client, ada)] == [["gone", HELLO]]
    assert client.get(f"/v1/responses/{claim.public_id}", headers=ada).status_code == 404
    again = respond(client, retry, model="openai", input="gone")
    assert again.status_code == 200 and again.json["id"] != claim.public_id
    assert len(fake.requests) == 2
    assert [r.public_id for r in stored_responses(app)] == [again.json["id"]]
    assert client.get(f"/v1/responses/{again.json['id']}", headers=ada).data == again.data


def test_two_copies_of_a_keyed_call_at_once_store_one_record(app, client, ada, fake):
    """The second copy, sent while the first is under way, is told so (409, Retry-After); the
    first's record is its claimed row, complete; a copy sent after is answered from it."""
    keyed = ada | {"Idempotency-Key": "twice"}
    release = threading.Event()
    fake.reply(hold=release)
    first = in_thread(lambda: respond(app.test_client(), keyed, model="openai", input="twice"))
    wait_for(lambda: fake.requests, what="the first copy at the provider")
    second = respond(client, keyed, model="openai", input="twice")
    assert second.status_code == 409 and second.headers["Retry-After"] == "1"
    assert second.json["error"]["code"] == "request_in_progress"
    release.set()
    answer = first()
    assert answer.status_code == 200
    [row] = stored_responses(app)
    assert row.public_id == answer.json["id"] and row.reply_id is not None
    assert client.get(f"/v1/responses/{row.public_id}", headers=ada).data == answer.data
    third = respond(client, keyed, model="openai", input="twice")
    assert third.status_code == 200 and third.json == answer.json
    assert len(fake.requests) == 1 and len(sessions(client, ada)) == 1


def test_a_budgets_release_is_a_part_of_the_statement(app, client, ada, auth):
    """A user with a budget: the reservation's release a part of the store's statement, sent
    alone all the same (on PostgreSQL; on SQLite one more statement of its transaction)."""
    admin = auth.admin()
    user_id = auth.user_id(ada)
    limits = {"token_budget": "100000/day"}
    put = client.put(f"/api/admin/users/{user_id}/limits", headers=admin, json=limits)
    assert put.status_code == 200
    with write_transactions(app) as transactions:
        answer = respond(client, ada, input="on a budget")
    assert answer.status_code == 200
    store = store_of(transactions, NEW_SESSION)
    if TEST_DATABASE_URL:
        [(statement, alone)] = store
        assert statement.startswith("WITH") and alone  # no BEGIN nor COMMIT around it
        assert "INSERT INTO responses" in statement
        assert "DELETE FROM budget_reservations" in statement
    else:
        assert any(s.startswith("DELETE FROM budget_reservations") for s, _ in store)
    assert client.get(f"/v1/responses/{answer.json['id']}", headers=ada).data == answer.data
    assert usage_rows(client, ada)[0]["calls"] == 1


# --- the record, on every database ------------------------------------------------------------


def test_a_first_turns_record_is_retrieved_listed_continued_and_deleted(app, client, ada, fake):
    first = respond(client, ada, model="openai", input="a question", instructions="Be terse.")
    assert first.status_code == 200, first.json
    first_id, number = first.json["id"], first.headers[SESSION]
    assert client.get(f"/v1/responses/{first_id}", headers=ada).data == first.data
    listed = client.get(f"/v1/responses/{first_id}/input_items", headers=ada).json
    assert [i["content"][0]["text"] for i in listed["data"]] == ["a question"]
    assert listed["first_id"] == listed["data"][0]["id"] and listed["has_more"] is False

    second = respond(client, ada, model="openai", input="d", previous_response_id=first_id)
    assert second.status_code == 200 and second.headers[SESSION] == number
    assert second.json["previous_response_id"] == first_id
    assert said(fake) == [("user", "a question"), ("assistant", HELLO), ("user", "d")]
    assert sessions(client, ada) == [(int(number), ["a question", HELLO, "d", HELLO])]

    deleted = client.delete(f"/v1/responses/{first_id}", headers=ada)
    assert deleted.json == {"id": first_id, "object": "response", "deleted": True}
    assert client.get(f"/v1/responses/{first_id}", headers=ada).status_code == 404
    assert client.get(f"/v1/responses/{first_id}/input_items", headers=ada).status_code == 404
    again = respond(client, ada, input="e", previous_response_id=first_id)
    assert again.status_code == 400
    assert again.json["error"]["code"] == "previous_response_not_found"
    assert sessions(client, ada) == [(int(number), ["d", HELLO])]  # its turn went with it
    third = respond(client, ada, model="openai", input="f", previous_response_id=second.json["id"])
    assert third.status_code == 200
    assert said(fake) == [("user", "d"), ("assistant", HELLO), ("user", "f")]
    rows = stored_responses(app)
    assert [r.previous_id for r in rows] == [None, rows[0].id]  # the first's deletion cut it


def test_store_false_writes_no_record_nor_session(app, client, ada):
    warm_up(client, ada)
    with write_transactions(app) as transactions:
        answer = respond(client, ada, input="off the record", store=False)
    assert answer.status_code == 200 and answer.json["store"] is False
    written = " ".join(s for t in transactions for s, _ in t)
    assert "responses" not in written and "chat_sessions" not in written
    assert "messages" not in written and "usage_daily" in written  # the usage counts
    assert stored_responses(app) == [] and sessions(client, ada) == []
    assert client.get(f"/v1/responses/{answer.json['id']}", headers=ada).status_code == 404


# --- the account deleted meanwhile -------------------------------------------------------------


@pytest.mark.parametrize("keyed", [False, True])
def test_an_account_deleted_during_the_call_leaves_nothing(app, client, ada, auth, fake, keyed):
    """Deleted while the provider answers: the store finds no user to count, stores nothing
    and answers 401, as a chat completion does (and every later call with the key); no record,
    session, message or usage is left, nor the call's claim of its retry key."""
    admin = auth.admin()
    user_id = auth.user_id(ada)
    release = threading.Event()
    fake.reply(hold=release)
    headers = ada | ({"Idempotency-Key": "gone"} if keyed else {})
    later = in_thread(lambda: respond(app.test_client(), headers, model="openai", input="bye"))
    wait_for(lambda: fake.requests, what="the provider call")
    assert client.delete(f"/api/user/{user_id}", headers=admin).status_code == 200
    release.set()
    answer = later()
    assert answer.status_code == 401
    assert answer.json["error"]["message"] == "The account no longer exists"
    assert row_counts(app) == (0, 0, 0, 0)


BURST = 12


@pytest.mark.parametrize("sdk", [False, True])
def test_an_account_deleted_amid_a_burst_of_its_new_responses_never_deadlocks(app, auth, sdk):
    """Each new response locks the user's counter, adds to their usage row and inserts its
    record (from an SDK: updates the row that claimed its retry key); the account's deletion
    takes the user's row, then what is theirs: every call is stored or answers 401, and
    nothing is left, no claim either."""
    client = app.test_client()
    admin, ada = auth.admin(client=client), auth.register(client=client)
    user_id = auth.user_id(ada, client=client)
    assert respond(client, ada, input="first").status_code == 200  # a usage row to lock
    headers = ada | ({"X-Stainless-Retry-Count": "0"} if sdk else {})
    n = itertools.count()
    deleted, statuses = amid_a_deletion(
        app,
        lambda other: respond(other, headers, input=f"a new chat {next(n)}").status_code,
        BURST,
        lambda: client.delete(f"/api/user/{user_id}", headers=admin).status_code,
        lambda: len(stored_responses(app)) > 1,  # the burst's first stored response
    )
    assert deleted == 200
    assert set(statuses) <= {200, 401}, statuses
    assert row_counts(app) == (0, 0, 0, 0)


def test_one_users_new_responses_at_once_each_get_a_session_and_a_record(app, client, ada):
    answers, lock = [], threading.Lock()
    go = threading.Barrier(BURST)

    def create(n):
        other = app.test_client()
        go.wait()
        answer = respond(other, ada, input=f"chat {n}")
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(a.status_code for a in answers) == [200] * BURST
    numbers = sorted(int(a.headers[SESSION]) for a in answers)
    assert numbers == list(range(1, BURST + 1))
    for answer in answers:
        kept = client.get(f"/v1/responses/{answer.json['id']}", headers=ada)
        assert kept.data == answer.data
    rows = stored_responses(app)
    assert len(rows) == BURST and len({r.session_id for r in rows}) == BURST
    assert sorted(len(m) for _, m in sessions(client, ada)) == [2] * BURST
