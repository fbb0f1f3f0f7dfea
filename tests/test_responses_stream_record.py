"""A streamed response's record, written at the stream's end (chat/stream_store.py): on
PostgreSQL a part of the statement that writes the reply (an INSERT, or the UPDATE of the row
that claimed the call's retry key), elsewhere a statement of its own in that transaction. On
every database the record is the response the stream ended with; a claim deleted meanwhile
leaves the reply stored without a record."""

import threading

import pytest
from sqlalchemy import delete

from polygenix.extensions import db
from polygenix.models import StoredResponse
from tests.helpers import (
    TEST_DATABASE_URL,
    in_thread,
    read_events,
    sessions,
    stored_responses,
    wait_for,
    warm_up,
    write_transactions,
)

HELLO = "Hello from the stream"  # the fake provider's streamed reply
KEYED = {"plain": {}, "sdk": {"X-Stainless-Retry-Count": "0"}}


@pytest.fixture
def app(provider_app):
    return provider_app


def stream(client, headers, **fields):
    body = {"model": "openai", "stream": True} | fields
    return client.post("/v1/responses", headers=headers, json=body)


def last_response(answer) -> dict:
    kind, data = read_events(answer.get_data(as_text=True))[-1]
    assert kind == "response.completed", (kind, data)
    return data["response"]


def stream_end(transactions) -> list[tuple[str, bool]]:
    """The transaction that wrote the reply's text (its last one: the lease let go)."""
    [end] = [t for t in transactions if any("v_content" in s or "lease_token=" in s for s, _ in t)]
    return end


@pytest.mark.parametrize("keyed", list(KEYED))
def test_a_streamed_responses_record_is_written_with_its_reply(app, client, ada, keyed):
    warm_up(client, ada)
    with write_transactions(app) as transactions:
        answer = stream(client, ada | KEYED[keyed], input="streamed")
        final = last_response(answer)
    assert answer.status_code == 200 and final["output"][0]["content"][0]["text"] == HELLO
    end = stream_end(transactions)
    if TEST_DATABASE_URL:
        touch, (statement, alone) = end
        assert touch[0].startswith("UPDATE chat_sessions") and not alone
        assert statement.startswith("WITH reply AS") and "UPDATE messages" in statement
        kept = "UPDATE responses" if keyed == "sdk" else "INSERT INTO responses"
        assert kept in statement
        assert sum("responses" in s for s, _ in end) == 1  # no statement of its own
    [row] = stored_responses(app)
    assert row.public_id == final["id"] and row.body["status"] == "completed"
    assert (row.session_id, row.reply_id) != (None, None) and row.question_id is not None
    kept_body = client.get(f"/v1/responses/{final['id']}", headers=ada).json
    assert kept_body == final
    listed = client.get(f"/v1/responses/{final['id']}/input_items", headers=ada).json
    assert [i["content"][0]["text"] for i in listed["data"]] == ["streamed"]
    follow = client.post(
        "/v1/responses",
        headers=ada,
        json={"model": "openai", "input": "more", "previous_response_id": final["id"]},
    )
    assert follow.status_code == 200


def test_a_streams_claim_deleted_meanwhile_leaves_the_reply_without_a_record(
    app, client, ada, fake
):
    """The claim's row deleted while the provider answers: the reply is stored, the record (an
    UPDATE of that row, in the reply's statement on PostgreSQL) matches none."""
    release = threading.Event()
    fake.reply(hold=release)
    keyed = ada | {"Idempotency-Key": "stream-gone"}
    later = in_thread(lambda: stream(app.test_client(), keyed, input="gone").get_data())
    wait_for(lambda: fake.requests, what="the provider call")
    [claim] = stored_responses(app)
    with app.app_context():
        db.session.execute(delete(StoredResponse).where(StoredResponse.id == claim.id))
        db.session.commit()
    release.set()
    events = read_events(later().decode())
    assert events[-1][0] == "response.completed"
    assert stored_responses(app) == []
    assert [m for _, m in sessions(client, ada)] == [["gone", HELLO]]
