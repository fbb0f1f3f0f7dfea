"""Budgets that hold: a call that hangs up early still counts, and calls in flight reserve their
estimate so that concurrent calls, across workers, overshoot a budget by at most one call."""

import pytest
from sqlalchemy import select

from polygenix.extensions import db
from polygenix.models import Message
from tests.fake_provider import openai_stream
from tests.helpers import ask, bearer, wait_for
from tests.provider_setup import SYSTEM


def usage_rows(client, headers) -> dict:
    rows = client.get("/api/usage", headers=headers, query_string={"group_by": "model"}).json
    return {row["model"]: row for row in rows["rows"]}


def estimate(*texts: str) -> int:
    """PolyGenix's estimate of tokens not reported: 4 characters each, rounded up."""
    return -(-sum(len(t) for t in texts) // 4)


def silent_provider(fake) -> None:
    """The provider answers at once (headers and a comment), then thinks for a long while."""
    fake.reply(chunks=[b": thinking\n\n", *openai_stream(["late"], "gpt-4.1-mini")], gap=3.0)


def hang_up_after_the_first_event(client, method, path, headers, body) -> None:
    response = client.open(path, method=method, headers=headers, json=body, buffered=False)
    assert response.status_code == 200, response.data
    assert next(iter(response.response))  # the start event (or /v1's first chunk)
    response.close()


@pytest.fixture
def app(provider_app):
    return provider_app


def test_a_stream_closed_before_the_first_words_counts_the_prompt(client, ada, fake):
    silent_provider(fake)
    body = {"content": "a long question", "model": "openai", "stream": True, "session_id": 4}
    hang_up_after_the_first_event(client, "POST", "/api/ai_chat/request", ada, body)
    assert fake.disconnected.wait(8), "the provider connection was not closed"
    row = wait_for(lambda: usage_rows(client, ada).get("openai/gpt-4.1-mini"), what="usage")
    assert (row["calls"], row["prompt_tokens"], row["completion_tokens"]) == (
        1,
        estimate(SYSTEM, "a long question"),
        0,
    )
    [question] = client.get("/api/ai_chat/4", headers=ada).json["messages"]
    assert question["failed"] and "disconnected" in question["error"]


def test_a_v1_stream_closed_before_the_first_words_counts_the_prompt(client, ada, fake):
    key = client.post("/api/keys", headers=ada, json={"name": "k"}).json["key"]
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    messages.append({"role": "user", "content": "now think hard"})
    for store in (True, False):
        fake.disconnected.clear()
        silent_provider(fake)
        body = {"model": "openai", "messages": messages, "stream": True, "store": store}
        hang_up_after_the_first_event(client, "POST", "/v1/chat/completions", bearer(key), body)
        assert fake.disconnected.wait(8), "the provider connection was not closed"
    row = wait_for(
        lambda: (r := usage_rows(client, ada).get("openai/gpt-4.1-mini")) and r["calls"] == 2 and r,
        what="usage of both calls",
    )
    assert row["prompt_tokens"] == 2 * estimate("q", "a", "now think hard")
    assert row["completion_tokens"] == 0


@pytest.mark.parametrize("again", ["regenerate", "edit"])
def test_a_regenerate_or_edit_stream_closed_early_counts_the_prompt(client, ada, fake, app, again):
    assert ask(client, ada, "the question", "echo", session_id=2).status_code == 200
    silent_provider(fake)
    if again == "regenerate":
        method, path, content = "POST", "/api/ai_chat/2/regenerate", "the question"
    else:
        with app.app_context():
            question = db.session.scalar(select(Message.id).where(Message.is_bot.is_(False)))
        method, path, content = "PUT", f"/api/ai_chat/2/messages/{question}", "new words"
    body = {"model": "openai", "stream": True} | ({"content": content} if again == "edit" else {})
    hang_up_after_the_first_event(client, method, path, ada, body)
    assert fake.disconnected.wait(8), "the provider connection was not closed"
    row = wait_for(lambda: usage_rows(client, ada).get("openai/gpt-4.1-mini"), what="usage")
    assert (row["calls"], row["prompt_tokens"], row["completion_tokens"]) == (
        1,
        estimate(SYSTEM, content),
        0,
    )
