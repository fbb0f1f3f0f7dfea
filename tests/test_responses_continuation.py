"""A stored response that continues another (`previous_response_id`): on PostgreSQL its record
is a part of the one statement that stores its turn in the chain's session
(chat/next_turn.py), sent as its own transaction as a chat completion's turn of an existing
session is; elsewhere it is written in that turn's transaction. On every database: the record
answers GET and input_items and is continued in turn; a session deleted meanwhile leaves
nothing half written; two continuations of one response are two branches; `store: false`
writes none; another user's response is none of the caller's; an account deleted before the
chain or a referenced item is read is a 401."""

import threading
from functools import partial

import pytest
from sqlalchemy import delete, func, select, text

from polygenix.extensions import db
from polygenix.models import Message, StoredResponse
from tests import helpers
from tests.helpers import (
    HELLO,
    SESSION,
    bearer,
    before_statement,
    fake_provider_app,
    in_thread,
    on_postgresql,
    record,
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
respond = partial(helpers.respond, model="openai")
complete = partial(helpers.complete, model="openai")
STORED_TURN = "INSERT INTO messages"  # the store of a turn inserts its question


def calls(client, headers) -> int:
    return sum(row["calls"] for row in usage_rows(client, headers))


# --- one statement on PostgreSQL ---------------------------------------------------------------


@on_postgresql
def test_a_continuation_is_one_statement_like_a_chat_completion_in_its_session(app, client, ada):
    warm_up(client, ada)
    first = respond(client, ada, input="start")
    number = first.headers[SESSION]
    in_session = ada | {SESSION: number}
    assert complete(client, in_session, "warm").status_code == 200
    warm = respond(client, ada, input="warm", previous_response_id=first.json["id"])
    assert warm.status_code == 200
    with write_transactions(app) as completion:
        assert complete(client, in_session, "a turn").status_code == 200
    with write_transactions(app) as response:
        answer = respond(client, ada, input="next", previous_response_id=first.json["id"])
    assert answer.status_code == 200 and answer.headers[SESSION] == number
    [(statement, alone)] = store_of(response, STORED_TURN)
    assert statement.startswith("WITH") and alone  # no BEGIN nor COMMIT around it
    for marker in ("FOR KEY SHARE", "INSERT INTO usage_daily", "UPDATE chat_sessions"):
        assert marker in statement
    assert statement.count("INSERT INTO messages") == 2
    assert statement.count("INSERT INTO responses") == 1
    # No more written than a chat completion's turn of an existing session.
    assert [[a for _, a in t] for t in response] == [[a for _, a in t] for t in completion]

    row = record(app, answer.json["id"])
    with app.app_context():
        question = db.session.get(Message, row.question_id)
        reply = db.session.get(Message, row.reply_id)
    assert (question.content, reply.content) == ("next", HELLO)
    assert reply.reply_to_id == question.id and row.session_id == question.session_id
    assert row.previous_id == record(app, first.json["id"]).id
    assert row.retry_key is None and row.created_at is not None


@on_postgresql
@pytest.mark.parametrize("sdk", [False, True])
def test_a_continuation_that_claimed_its_retry_key_updates_that_row_in_the_statement(
    app, client, ada, sdk
):
    """The row that holds the call's retry key (its Idempotency-Key, or an SDK's body digest) is
    the record: an UPDATE of it, a CTE of the one statement, sent as its own transaction."""
    warm_up(client, ada)
    first = respond(client, ada, input="start")
    if sdk:
        keyed, retry = ({"X-Stainless-Retry-Count": n} for n in ("0", "1"))
    else:
        keyed = retry = {"Idempotency-Key": "next-1"}
    body = {"input": "keyed", "previous_response_id": first.json["id"]}
    with write_transactions(app) as transactions:
        answer = respond(client, ada | keyed, **body)
    assert answer.status_code == 200
    [(statement, alone)] = store_of(transactions, STORED_TURN)
    assert statement.startswith("WITH") and alone  # no BEGIN nor COMMIT around it
    assert statement.count("UPDATE responses") == 1 and "INSERT INTO responses" not in statement
    row = record(app, answer.json["id"])
    assert row.reply_id is not None and row.previous_id == record(app, first.json["id"]).id
    assert row.session_id == record(app, first.json["id"]).session_id
    assert client.get(f"/v1/responses/{answer.json['id']}", headers=ada).data == answer.data
    listed = client.get(f"/v1/responses/{answer.json['id']}/input_items", headers=ada).json
    assert [i["content"][0]["text"] for i in listed["data"]] == ["keyed"]
    again = respond(client, ada | retry, **body)
    assert again.status_code == 200 and again.json == answer.json  # answered from the record
    assert len(stored_responses(app)) == 2 and calls(client, ada) == 2


def test_a_continuations_claim_deleted_before_the_store_leaves_it_without_a_record(
    app, client, ada, fake
):
    """The call's claim deleted while the provider answers: the record, an UPDATE of it,
    matches no row; the turn is stored in the chain's session all the same, its response is
    not found, and a retry is answered anew."""
    first = respond(client, ada, input="one")
    release = threading.Event()
    fake.reply(hold=release)
    keyed = ada | {"Idempotency-Key": "gone"}
    body = {"input": "two", "previous_response_id": first.json["id"]}
    later = in_thread(lambda: respond(app.test_client(), keyed, **body))
    wait_for(lambda: len(fake.requests) == 2, what="the provider call")
    [claim] = [r for r in stored_responses(app) if r.session_id is None]
    with app.app_context():
        db.session.execute(delete(StoredResponse).where(StoredResponse.id == claim.id))
        db.session.commit()
    release.set()
    answer = later()
    assert answer.status_code == 200 and answer.json["id"] == claim.public_id
    assert [r.public_id for r in stored_responses(app)] == [first.json["id"]]
    assert [m for _, m in sessions(client, ada)] == [["one", HELLO, "two", HELLO]]
    assert client.get(f"/v1/responses/{claim.public_id}", headers=ada).status_code == 404
    again = respond(client, keyed, **body)
    assert again.status_code == 200 and again.json["id"] != claim.public_id
    assert len(fake.requests) == 3 and len(stored_responses(app)) == 2


# --- the record, on every database ------------------------------------------------------------


def test_a_continuations_record_is_retrieved_listed_and_continued(app, client, ada, fake):
    first = respond(client, ada, input="one", instructions="Be terse.")
    second = respond(client, ada, input="two", previous_response_id=first.json["id"])
    assert second.status_code == 200, second.json
    assert second.json["previous_response_id"] == first.json["id"]
    assert second.headers[SESSION] == first.headers[SESSION]
    assert client.get(f"/v1/responses/{second.json['id']}", headers=ada).data == second.data
    listed = client.get(f"/v1/responses/{second.json['id']}/input_items", headers=ada).json
    assert [i["content"][0]["text"] for i in listed["data"]] == ["two"]  # its own input only

    third = respond(client, ada, input="three", previous_response_id=second.json["id"])
    assert third.status_code == 200
    assert said(fake) == [
        ("user", "one"),
        ("assistant", HELLO),
        ("user", "two"),
        ("assistant", HELLO),
        ("user", "three"),
    ]
    assert client.get(f"/v1/responses/{third.json['id']}", headers=ada).data == third.data
    rows = stored_responses(app)
    assert [r.public_id for r in rows] == [a.json["id"] for a in (first, second, third)]
    assert [r.previous_id for r in rows] == [None, rows[0].id, rows[1].id]
    assert len({r.session_id for r in rows}) == 1
    number = int(first.headers[SESSION])
    assert sessions(client, ada) == [(number, ["one", HELLO, "two", HELLO, "three", HELLO])]
    assert calls(client, ada) == 3

    # Each record is its own turn: the middle one deleted, the third continues none.
    assert client.delete(f"/v1/responses/{second.json['id']}", headers=ada).status_code == 200
    assert sessions(client, ada) == [(number, ["one", HELLO, "three", HELLO])]
    assert record(app, third.json["id"]).previous_id is None


def test_a_store_false_continuation_writes_no_record_nor_message(app, client, ada, fake):
    first = respond(client, ada, input="one")
    before = row_counts(app)
    answer = respond(client, ada, input="off", previous_response_id=first.json["id"], store=False)
    assert answer.status_code == 200 and answer.json["store"] is False
    assert SESSION not in answer.headers
    assert said(fake) == [("user", "one"), ("assistant", HELLO), ("user", "off")]
    assert row_counts(app)[:3] == before[:3]  # sessions, messages, records
    assert calls(client, ada) == 2  # the usage counts
    assert client.get(f"/v1/responses/{answer.json['id']}", headers=ada).status_code == 404
    later = respond(client, ada, input="x", previous_response_id=answer.json["id"])
    assert later.status_code == 400
    assert later.json["error"]["code"] == "previous_response_not_found"


def test_another_users_response_is_not_continued(app, client, ada, bob):
    first = respond(client, ada, input="ada's")
    before = row_counts(app)
    answer = respond(client, bob, input="bob's", previous_response_id=first.json["id"])
    assert answer.status_code == 400
    error = answer.json["error"]
    assert error["code"] == "previous_response_not_found"
    assert error["param"] == "previous_response_id" and error["type"] == "invalid_request_error"
    assert row_counts(app) == before and usage_rows(client, bob) == []
    assert client.get(f"/v1/responses/{first.json['id']}", headers=bob).status_code == 404


# --- races --------------------------------------------------------------------------------------


@pytest.mark.parametrize("keyed", [False, True])
def test_a_continuation_whose_session_was_deleted_meanwhile_leaves_nothing(
    app, client, ada, fake, keyed
):
    """The session deleted while the provider answers: the store finds it gone, stores no
    message and no record (nor the claim of its retry key), answers 404 in OpenAI's shape, and
    the call's usage counts."""
    first = respond(client, ada, input="one")
    number = first.headers[SESSION]
    release = threading.Event()
    fake.reply(hold=release)
    headers = ada | ({"Idempotency-Key": "gone"} if keyed else {})
    body = {"input": "two", "previous_response_id": first.json["id"]}
    later = in_thread(lambda: respond(app.test_client(), headers, **body))
    wait_for(lambda: len(fake.requests) == 2, what="the provider call")
    assert client.delete(f"/api/ai_chat/{number}", headers=ada).status_code == 200
    release.set()
    answer = later()
    assert answer.status_code == 404
    assert answer.json["error"]["message"] == "Chat session not found"
    assert set(answer.json["error"]) >= {"message", "type", "param", "code"}
    assert row_counts(app)[:3] == (0, 0, 0)  # no session, message nor record left
    assert calls(client, ada) == 2


def test_a_continuation_whose_previous_response_was_deleted_meanwhile_continues_none(
    app, client, ada, fake
):
    """The response it continues deleted (with its turn) while the provider answers: the turn
    is stored in the session, its record continuing none, as a continuation of a response
    deleted afterwards does."""
    first = respond(client, ada, input="one")
    release = threading.Event()
    fake.reply(hold=release)
    later = in_thread(
        lambda: respond(app.test_client(), ada, input="two", previous_response_id=first.json["id"])
    )
    wait_for(lambda: len(fake.requests) == 2, what="the provider call")
    assert client.delete(f"/v1/responses/{first.json['id']}", headers=ada).status_code == 200
    release.set()
    answer = later()
    assert answer.status_code == 200
    [row] = stored_responses(app)
    assert row.public_id == answer.json["id"] and row.previous_id is None
    assert row.reply_id is not None
    assert sessions(client, ada) == [(int(first.headers[SESSION]), ["two", HELLO])]
    assert client.get(f"/v1/responses/{answer.json['id']}", headers=ada).data == answer.data


def delete_account(app, user_id: int, admin: dict, statuses: list[int]) -> None:
    """The account deleted through the admin API, committed on a connection of its own (in a
    thread) before this returns; the deletion's status in `statuses`."""
    gone = in_thread(lambda: app.test_client().delete(f"/api/user/{user_id}", headers=admin))
    statuses.append(gone().status_code)


@pytest.mark.parametrize("key", [False, True])
def test_a_continuation_whose_account_went_before_the_chain_was_read_is_a_401(
    app, client, ada, auth, key
):
    """The account deleted between the caller's lookup and the chain's read: the chain is none
    of anyone's, but the answer is the 401 every later call with the token or key gets (in
    OpenAI's shape), not a 400 previous_response_not_found; nothing is left."""
    admin = auth.admin()
    user_id = auth.user_id(ada)
    if key:
        ada = bearer(client.post("/api/keys", headers=ada, json={"name": "k"}).json["key"])
    first = respond(client, ada, input="one").json["id"]
    deleted: list[int] = []
    delete = partial(delete_account, app, user_id, admin, deleted)
    with before_statement(app, "WITH RECURSIVE chain", delete) as sent:
        answer = respond(client, ada, input="two", previous_response_id=first)
    assert sent and deleted == [200]
    assert answer.status_code == 401, answer.json
    assert answer.json["error"]["message"] == "The account no longer exists"
    assert set(answer.json["error"]) >= {"message", "type", "param", "code"}
    assert row_counts(app) == (0, 0, 0, 0)


@pytest.mark.parametrize("key", [False, True])
def test_an_item_reference_whose_account_went_before_it_was_read_is_a_401(
    app, client, ada, auth, key
):
    """The account deleted between the caller's lookup and the read of the response an
    `item_reference` names: the item is none of anyone's, but the answer is the 401 every later
    call with the token or key gets, not a 400 for an unknown item; nothing is left."""
    admin = auth.admin()
    user_id = auth.user_id(ada)
    if key:
        ada = bearer(client.post("/api/keys", headers=ada, json={"name": "k"}).json["key"])
    [replied] = respond(client, ada, input="one").json["output"]
    refer = [{"type": "item_reference", "id": replied["id"]}, {"role": "user", "content": "two"}]
    deleted: list[int] = []
    delete = partial(delete_account, app, user_id, admin, deleted)
    with before_statement(app, "WHERE responses.public_id", delete) as sent:
        answer = respond(client, ada, input=refer)
    assert sent and deleted == [200]
    assert answer.status_code == 401, answer.json
    assert answer.json["error"]["message"] == "The account no longer exists"
    assert set(answer.json["error"]) >= {"message", "type", "param", "code"}
    assert row_counts(app) == (0, 0, 0, 0)


def test_two_continuations_of_one_response_at_once_are_two_branches(app, client, ada, fake):
    """As docs/api.md says: each is sent the same context, each stored with the same previous
    response, both turns in that session one after the other; a continuation of either branch
    is sent that branch only."""
    first = respond(client, ada, input="root")
    release = threading.Event()
    fake.reply(hold=release, times=2)
    joins = [
        in_thread(
            lambda n=n: respond(
                app.test_client(), ada, input=f"branch {n}", previous_response_id=first.json["id"]
            )
        )
        for n in (1, 2)
    ]
    wait_for(lambda: len(fake.requests) == 3, what="both provider calls")
    release.set()
    answers = [join() for join in joins]
    assert [a.status_code for a in answers] == [200, 200]
    for request in fake.requests[1:]:
        sent = [(m["role"], m["content"]) for m in request.body["messages"]]
        assert sent[:2] == [("user", "root"), ("assistant", HELLO)] and len(sent) == 3
    rows = stored_responses(app)
    root = rows[0].id
    assert sorted(r.previous_id or 0 for r in rows) == [0, root, root]
    assert len({r.session_id for r in rows}) == 1
    [(number, contents)] = sessions(client, ada)
    assert contents[:2] == ["root", HELLO] and len(contents) == 6
    assert sorted(contents[2::2]) == ["branch 1", "branch 2"] and contents[3::2] == [HELLO] * 2

    one = answers[0]  # "branch 1"'s
    leaf = respond(client, ada, input="leaf", previous_response_id=one.json["id"])
    assert leaf.status_code == 200 and leaf.headers[SESSION] == str(number)
    assert said(fake) == [
        ("user", "root"),
        ("assistant", HELLO),
        ("user", "branch 1"),
        ("assistant", HELLO),
        ("user", "leaf"),
    ]
    assert calls(client, ada) == 4


@on_postgresql
def test_a_previous_response_deleted_under_the_statement_sends_the_turn_the_orms_way(
    app, client, ada, fake
):
    """The response it continues deleted after the statement's snapshot, before its record's
    foreign key is checked (the deletion committed while the check waits for its row): the
    statement fails whole, nothing of it is left, and commit.py's path stores the turn, its
    record continuing none, its usage counted once."""
    first = respond(client, ada, input="one")
    previous = record(app, first.json["id"]).id
    release = threading.Event()
    fake.reply(hold=release)
    later = in_thread(
        lambda: respond(app.test_client(), ada, input="two", previous_response_id=first.json["id"])
    )
    wait_for(lambda: len(fake.requests) == 2, what="the provider call")
    with app.app_context():
        deleting = db.engine.connect()
        # In autocommit: a transaction reads pg_stat_activity once.
        watching = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        deleting.execute(delete(StoredResponse).where(StoredResponse.id == previous))
        release.set()
        blocked = (
            select(func.count())
            .where(text("wait_event_type = 'Lock' AND query LIKE 'WITH owner%'"))
            .select_from(text("pg_stat_activity"))
        )
        wait_for(lambda: watching.execute(blocked).scalar(), what="the statement's wait")
        deleting.commit()
    finally:
        deleting.close()
        watching.close()
    answer = later()
    assert answer.status_code == 200
    [row] = stored_responses(app)
    assert row.public_id == answer.json["id"] and row.previous_id is None
    number = int(first.headers[SESSION])
    assert sessions(client, ada) == [(number, ["one", HELLO, "two", HELLO])]
    assert calls(client, ada) == 2
