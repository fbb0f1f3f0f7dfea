"""Budgets that hold: a call that hangs up early still counts, and calls in flight reserve their
estimate so that concurrent calls, across workers, overshoot a budget by at most one call."""

import os
import signal
import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import create_engine, select

from polygenix import clock
from polygenix.extensions import db
from polygenix.governance.policy import limits_for
from polygenix.governance.reservations import reserve
from polygenix.models import BudgetReservation, Message
from tests.fake_provider import openai_stream
from tests.gunicorn_server import gunicorn, register_over_http, workers
from tests.helpers import ask, assert_envelope, at_once, bearer, in_thread, wait_for
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


# --- reservations: calls in flight see each other ------------------------------------------


def reservations(app) -> list[tuple[int, int]]:
    with app.app_context():
        return [
            (r.user_id, r.tokens)
            for r in db.session.scalars(select(BudgetReservation).order_by(BudgetReservation.id))
        ]


@pytest.fixture
def budgeted(make_app, provider_config):
    """An app whose users may use 50 tokens a day, each call reserving more than that (its
    prompt and an output cap of 100): one call in flight holds the whole budget."""
    return make_app(provider_config | {"TOKEN_BUDGET": "50/day", "MAX_OUTPUT_TOKENS": 100})


def test_a_call_in_flight_holds_the_budget_and_its_end_frees_it(budgeted, auth, fake):
    client = budgeted.test_client()
    ada = auth.register(client=client)
    fake.reply(delay=1.0)
    first = in_thread(lambda: ask(budgeted.test_client(), ada, "slow", "openai"))
    wait_for(lambda: fake.requests, what="the first call")
    assert [tokens for _, tokens in reservations(budgeted)] == [estimate(SYSTEM, "slow") + 100]
    refused = ask(client, ada, "meanwhile", "openai")
    held = estimate(SYSTEM, "slow") + 100
    assert_envelope(refused, 429, f"is taken: 0 used and {held} reserved by your calls in flight")
    assert refused.headers["Retry-After"] == "1" and "x-should-retry" not in refused.headers
    assert first().status_code == 200
    assert reservations(budgeted) == []
    assert ask(client, ada, "after", "openai").status_code == 200  # 18 used, none held


@pytest.mark.parametrize("path", ["/api/ai_chat/request", "/v1/chat/completions"])
def test_a_stream_holds_its_reservation_while_it_is_relayed(budgeted, auth, fake, path):
    """Flask ends a streamed request's view before relaying the stream: the reservation must
    last until the stream's end, not the view's."""
    client = budgeted.test_client()
    ada = auth.register(client=client)
    if path.startswith("/v1"):
        body = {"model": "openai", "stream": True, "messages": [{"role": "user", "content": "q"}]}
    else:
        body = {"model": "openai", "stream": True, "content": "q"}
    fake.reply(chunks=openai_stream(["one ", "two ", "three"], "m"), gap=0.5)
    response = client.post(path, headers=ada, json=body, buffered=False)
    chunks = iter(response.response)
    received = b""
    while b"one " not in received:
        received += next(chunks)
    assert len(reservations(budgeted)) == 1
    assert_envelope(ask(client, ada, "meanwhile", "openai"), 429, "reserved by your calls")
    for _ in chunks:
        pass
    response.close()
    assert reservations(budgeted) == []


def test_a_stream_the_client_leaves_releases_its_reservation(budgeted, auth, fake):
    client = budgeted.test_client()
    ada = auth.register(client=client)
    fake.reply(chunks=openai_stream(["one ", "two ", "three"], "m"), gap=0.5)
    body = {"model": "openai", "stream": True, "content": "q"}
    response = client.post("/api/ai_chat/request", headers=ada, json=body, buffered=False)
    assert next(iter(response.response)).startswith(b"event: start")
    assert len(reservations(budgeted)) == 1
    response.close()
    assert reservations(budgeted) == []


@pytest.mark.parametrize(
    "call",
    ["plain", "stream", "v1", "v1 stream", "v1 store false", "regenerate stream", "edit"],
)
@pytest.mark.parametrize("outcome", ["answered", "provider error", "cut", "session deleted"])
def test_every_way_a_call_ends_releases_its_reservation(budgeted, auth, fake, call, outcome):
    client = budgeted.test_client()
    ada = auth.register(client=client)
    key = client.post("/api/keys", headers=ada, json={"name": "k"}).json["key"]
    assert ask(client, ada, "first", "echo", session_id=1).status_code == 200
    if outcome == "provider error":
        fake.reply(400, {"error": {"message": "bad request"}})
    elif outcome == "cut":
        fake.reply(chunks=openai_stream(["par", "tial"], "m")[:2])
    elif outcome == "session deleted":
        fake.reply(delay=0.5)
    with budgeted.app_context():
        question = db.session.scalar(select(Message.id).where(Message.is_bot.is_(False)))
    calls = {
        "plain": ("POST", "/api/ai_chat/request", ada, {"content": "q", "session_id": 1}),
        "stream": (
            "POST",
            "/api/ai_chat/request",
            ada,
            {"content": "q", "session_id": 1, "stream": True},
        ),
        "v1": ("POST", "/v1/chat/completions", bearer(key), {}),
        "v1 stream": ("POST", "/v1/chat/completions", bearer(key), {"stream": True}),
        "v1 store false": ("POST", "/v1/chat/completions", bearer(key), {"store": False}),
        "regenerate stream": ("POST", "/api/ai_chat/1/regenerate", ada, {"stream": True}),
        "edit": ("PUT", f"/api/ai_chat/1/messages/{question}", ada, {"content": "new"}),
    }
    method, path, headers, body = calls[call]
    body = body | {"model": "openai"}
    if path.startswith("/v1"):
        body["messages"] = [{"role": "user", "content": "q"}]
        headers = headers | {"X-PolyGenix-Session": "1"}
    finished = in_thread(
        lambda: budgeted.test_client().open(path, method=method, headers=headers, json=body).data
    )
    if outcome == "session deleted":
        wait_for(lambda: fake.requests, what="the provider call")
        assert client.delete("/api/ai_chat/1", headers=ada).status_code == 200
    finished()
    assert reservations(budgeted) == []


def test_a_request_that_ends_with_its_reservation_held_releases_it(budgeted, auth):
    """Whatever failure left a reservation behind, the request's end releases it."""
    client = budgeted.test_client()
    ada = auth.register(client=client)
    user_id = auth.user_id(ada, client=client)
    with budgeted.test_request_context():
        limits = limits_for(user_id)
        reserve(user_id, limits, 10, None, clock.now() + timedelta(minutes=5))
        db.session.commit()
        assert reservations(budgeted) == [(user_id, 10)]
    assert reservations(budgeted) == []


# --- through two gunicorn workers ------------------------------------------------------------


def provider_settings(fake, **settings) -> dict:
    return {
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": fake.url + "/v1",
        "SYSTEM_PROMPT": "",
        "PROVIDER_MAX_RETRY_WAIT": "0.05",
    } | settings


def post(base, headers, content="hi", **extra):
    return requests.post(
        base + "/api/ai_chat/request",
        json={"content": content, "model": "openai"} | extra,
        headers=headers | {"Connection": "close"},
        timeout=60,
    )


@pytest.fixture
def slow_fake(fake):
    fake.reset()
    fake.default_delay = 0.3
    yield fake
    fake.default_delay = 0.0


@pytest.mark.slow
def test_concurrent_calls_on_two_workers_overshoot_a_budget_by_at_most_one_call(
    tmp_path, slow_fake
):
    """24 calls at once against a 100-token budget, each reserving 21 (1 prompt token, an
    output cap of 20) and using 18: admitted while the used and reserved tokens are under
    100, so the calls stored use less than 100 + 18. Without reservations all 24 were
    admitted: 432 tokens."""
    settings = provider_settings(slow_fake, TOKEN_BUDGET="100/day", MAX_OUTPUT_TOKENS="20")
    with gunicorn(tmp_path, settings) as (base, _):
        headers = register_over_http(base)

        def call():
            response = post(base, headers)
            return response.status_code, response.json()

        answers = at_once(call, 24, timeout=60)
        assert {status for status, _ in answers} <= {200, 429}, answers
        refusals = [body["message"] for status, body in answers if status == 429]
        assert any("reserved by your calls in flight" in m for m in refusals), refusals
        # One at a time until the budget is used up.
        while (late := post(base, headers)).status_code == 200:
            pass
        assert "is used up" in late.json()["message"]
        report = requests.get(base + "/api/usage", headers=headers, timeout=10).json()
        used = report["budget"]["tokens"]["used"]
        assert 100 <= used < 100 + 18
        assert report["rows"][0]["calls"] == used // 18


@pytest.mark.slow
def test_a_failed_call_releases_its_reservation_on_two_workers(tmp_path, fake):
    fake.reset()
    settings = provider_settings(fake, TOKEN_BUDGET="50/day", MAX_OUTPUT_TOKENS="100")
    with gunicorn(tmp_path, settings) as (base, url):
        headers = register_over_http(base)
        for _ in range(3):
            fake.reply(400, {"error": {"message": "rejected"}})
            assert post(base, headers).status_code == 502
        fake.reply(503, {"error": {"message": "down"}}, times=3)  # retried, then given up
        assert post(base, headers).status_code == 502
        assert post(base, headers).status_code == 200  # nothing held: admitted
        assert held_in(url) == []


def held_in(url: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql(
                "SELECT user_id, tokens FROM budget_reservations"
            ).all()
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_killed_workers_reservation_expires_at_the_calls_deadline(tmp_path, fake):
    """Both workers killed while a call waits on the provider: its reservation outlives them
    and refuses other calls until the call's deadline (PROVIDER_TIMEOUT), then counts for
    nothing and goes."""
    fake.reset()
    settings = provider_settings(
        fake, TOKEN_BUDGET="50/day", MAX_OUTPUT_TOKENS="100", PROVIDER_TIMEOUT="20"
    )
    hold = threading.Event()
    with gunicorn(tmp_path, settings) as (base, url):
        headers = register_over_http(base)
        fake.reply(hold=hold)
        doomed = threading.Thread(target=lambda: _quietly(lambda: post(base, headers, "doomed")))
        doomed.start()
        try:
            wait_for(lambda: fake.requests, what="the call to reach the provider")
            assert len(held_in(url)) == 1
            for pid in workers(base):
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: _ready(base), timeout=15, what="new workers", interval=0.1)
            refused = post(base, headers, "while it is held")
            assert refused.status_code == 429
            assert "reserved by your calls in flight" in refused.json()["message"]
            answered = wait_for(
                lambda: (r := post(base, headers, "later")).status_code == 200 and r,
                timeout=40,
                what="the reservation to expire",
                interval=0.5,
            )
            assert answered.json()["content"]
            assert held_in(url) == []  # the expired one deleted at the next admission
        finally:
            hold.set()
            doomed.join(timeout=30)


def _quietly(call):
    try:
        call()
    except requests.RequestException:
        pass


def _ready(base: str) -> bool:
    try:
        return requests.get(base + "/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
