"""The Responses API when things go wrong or come twice: failed responses kept (provider errors,
bodies cut short, a 200 that is an error, streams that fail), a client's retries answered once
(Idempotency-Key, the SDK's own retries, the same request twice at once), and the session
header (X-PolyGenix-Session)."""

import threading

import pytest
import requests

from tests.fake_provider import openai_stream
from tests.helpers import bearer, in_thread, saved, wait_for
from tests.openai_sdk import openai_sdk


def post(server, key, body, **headers):
    return requests.post(
        server + "/v1/responses", headers=bearer(key) | headers, json=body, timeout=30
    )


def get(server, key, response_id, path=""):
    return requests.get(
        f"{server}/v1/responses/{response_id}{path}", headers=bearer(key), timeout=30
    )


# --- failed responses are kept -------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500, "body": {"error": {"message": "down"}}, "times": 3},
        {"status": 200, "body": {"error": {"message": "model overloaded"}}},  # 200, an error
        {
            "status": 200,
            "body": {"choices": [{"message": {"content": "cut"}}]},
            "cut": True,
            "times": 3,
        },
    ],
    ids=["5xx", "200-with-error", "cut-body"],
)
def test_a_failed_response_is_kept_with_its_input(server, key, fake, client, ada, failure):
    fake.reply(**failure)
    answer = post(server, key, {"model": "openai", "input": "keep me", "metadata": {"k": "v"}})
    assert answer.status_code >= 500, answer.text
    response_id = answer.headers["X-PolyGenix-Response-Id"]
    stored = get(server, key, response_id)
    assert stored.status_code == 200
    body = stored.json()
    assert body["id"] == response_id and body["status"] == "failed"
    assert body["error"]["code"] == "server_error" and body["error"]["message"]
    assert body["output"] == [] and body["metadata"] == {"k": "v"}
    items = get(server, key, response_id, "/input_items").json()["data"]
    assert [i["content"][0]["text"] for i in items] == ["keep me"]
    number = int(answer.headers["X-PolyGenix-Session"])
    assert saved(client, ada) == [(number, [("keep me", True)])]
    # Not continued (it has no answer), and deleted with its question.
    refused = post(
        server, key, {"model": "openai", "input": "x", "previous_response_id": body["id"]}
    )
    assert refused.status_code == 400
    deleted = requests.delete(f"{server}/v1/responses/{response_id}", headers=bearer(key))
    assert deleted.status_code == 200
    assert get(server, key, response_id).status_code == 404
    assert saved(client, ada) == [(number, [])]


def test_a_rate_limited_response_is_kept_failed(server, key, fake):
    fake.reply(429, {"error": {"message": "slow"}}, headers={"retry-after": "0"}, times=9)
    answer = post(server, key, {"model": "openai", "input": "later"})
    assert answer.status_code == 429
    body = get(server, key, answer.headers["X-PolyGenix-Response-Id"]).json()
    assert body["status"] == "failed" and body["error"]["code"] == "rate_limit_exceeded"


def test_a_stream_that_fails_is_retrievable_by_the_id_of_its_events(server, key, fake):
    fake.reply(chunks=openai_stream(["part"], "m")[:2] + [b'data: {"error": {"message": "x"}}\n\n'])
    sdk = openai_sdk(server, key)
    events = list(sdk.responses.create(model="openai", input="go", stream=True))
    failed = events[-1]
    assert failed.type == "response.failed"
    stored = sdk.responses.retrieve(failed.response.id)
    assert stored.status == "failed" and stored.error.message == failed.response.error.message
    assert stored.output[0].content[0].text == "part" and stored.output[0].status == "incomplete"
    assert [i.content[0].text for i in sdk.responses.input_items.list(stored.id).data] == ["go"]


def test_a_stream_refused_before_it_began_is_kept_failed(server, key, fake, client, ada):
    fake.reply(503, {"error": {"message": "busy"}}, times=3)
    answer = post(server, key, {"model": "openai", "input": "streamed", "stream": True})
    assert answer.status_code == 502
    body = get(server, key, answer.headers["X-PolyGenix-Response-Id"]).json()
    assert body["status"] == "failed"
    assert saved(client, ada)[0][1] == [("streamed", True)]


def test_store_false_keeps_no_failure(server, key, fake, client, ada):
    fake.reply(500, {"error": {"message": "down"}}, times=3)
    answer = post(server, key, {"model": "openai", "input": "gone", "store": False})
    assert answer.status_code == 502 and "X-PolyGenix-Response-Id" not in answer.headers
    assert saved(client, ada) == []


# --- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_retry_of_an_answered_call_gets_the_stored_answer(server, key, fake, client, ada, stream):
    body = {"model": "openai", "input": "once", "stream": stream}
    first = post(server, key, body, **{"Idempotency-Key": "k-1"})
    calls = len(fake.requests)
    again = post(server, key, body, **{"Idempotency-Key": "k-1"})
    assert again.status_code == 200 and len(fake.requests) == calls  # no second call
    assert again.headers["X-PolyGenix-Session"] == first.headers["X-PolyGenix-Session"]
    if stream:
        first_id = first.text.split('"id":"', 1)[1].split('"', 1)[0]
        assert first_id in again.text and '"type":"response.completed"' in again.text
    else:
        assert again.json() == first.json()
    assert len(saved(client, ada)) == 1
    if stream:  # a replayed stream, as the SDK reads it (the key with the SDK's own body)
        sdk = openai_sdk(server, key)

        def by_the_sdk() -> str:
            keyed = {"Idempotency-Key": "k-sdk"}
            with sdk.responses.stream(model="openai", input="once", extra_headers=keyed) as s:
                return s.get_final_response().id

        assert by_the_sdk() == by_the_sdk() and len(fake.requests) == calls + 1
    # Another user's call with the same key is not this one.
    other = post(server, key, body | {"input": "other words"}, **{"Idempotency-Key": "k-2"})
    assert other.status_code == 200 and len(fake.requests) == calls + 1 + stream


def test_a_key_reused_for_another_body_is_another_call(server, key, fake, client, ada):
    """An Idempotency-Key stands for one call with one body: the same key sent with other words
    is answered anew, never with the first call's answer."""
    keyed = {"Idempotency-Key": "k"}
    first = post(server, key, {"model": "openai", "input": "first words"}, **keyed)
    assert first.status_code == 200
    other = post(server, key, {"model": "openai", "input": "other words"}, **keyed)
    assert other.status_code == 200 and other.json()["id"] != first.json()["id"]
    assert len(fake.requests) == 2
    assert sorted(m for _, [(m, _), _] in saved(client, ada)) == ["first words", "other words"]
    again = post(server, key, {"model": "openai", "input": "first words"}, **keyed)
    assert again.json() == first.json() and len(fake.requests) == 2


def test_the_sdks_retries_leave_one_session_and_one_answer(server, key, fake, client, ada):
    fake.reply(429, {"error": {"message": "slow"}}, headers={"retry-after": "0"}, times=6)
    sdk = openai_sdk(server, key, max_retries=2)
    answer = sdk.responses.create(model="openai", input="third time lucky")
    assert answer.output_text == "Hello from gpt-4.1-mini"
    [(_, messages)] = saved(client, ada)
    assert messages == [("third time lucky", False), ("Hello from gpt-4.1-mini", False)]
    [(_, everything)] = saved(client, ada, include_superseded="true")
    assert everything == [("third time lucky", True)] * 2 + messages
    assert sdk.responses.retrieve(answer.id).status == "completed"


def test_different_calls_with_the_same_words_stay_apart(server, key, fake, client, ada):
    sdk = openai_sdk(server, key)
    one = sdk.responses.create(model="openai", input="same words")
    two = sdk.responses.create(model="openai", input="same words")
    assert one.id != two.id and len(saved(client, ada)) == 2


def test_a_failed_call_retried_is_answered_anew_in_its_session(server, key, fake, client, ada):
    fake.reply(500, {"error": {"message": "down"}}, times=3)
    body = {"model": "openai", "input": "try again"}
    failed = post(server, key, body, **{"Idempotency-Key": "k-f"})
    assert failed.status_code == 502
    again = post(server, key, body, **{"Idempotency-Key": "k-f"})
    assert again.status_code == 200 and again.json()["status"] == "completed"
    assert again.headers["X-PolyGenix-Session"] == failed.headers["X-PolyGenix-Session"]
    [(_, messages)] = saved(client, ada)
    assert messages == [("try again", False), ("Hello from gpt-4.1-mini", False)]
    # The failed attempt stays retrievable as it was.
    first = get(server, key, failed.headers["X-PolyGenix-Response-Id"]).json()
    assert first["status"] == "failed"


def test_the_same_request_twice_at_once_calls_the_provider_once(server, key, fake, client, ada):
    release = threading.Event()
    fake.reply(hold=release)
    body = {"model": "openai", "input": "only once"}
    first = in_thread(lambda: post(server, key, body, **{"Idempotency-Key": "k-race"}))
    wait_for(lambda: fake.requests, what="the first call at the provider")
    second = post(server, key, body, **{"Idempotency-Key": "k-race"})
    assert second.status_code == 409 and second.headers["Retry-After"] == "1"
    assert second.json()["error"]["code"] == "request_in_progress"
    release.set()
    answered = first()
    assert answered.status_code == 200
    third = post(server, key, body, **{"Idempotency-Key": "k-race"})
    assert third.json() == answered.json()
    assert len(fake.requests) == 1 and len(saved(client, ada)) == 1


def test_a_retry_with_the_same_key_after_a_refusal_is_a_new_call(server, key, fake):
    refused = post(
        server, key, {"model": "no-such/model", "input": "x"}, **{"Idempotency-Key": "r"}
    )
    assert refused.status_code == 404
    answer = post(server, key, {"model": "openai", "input": "x"}, **{"Idempotency-Key": "r"})
    assert answer.status_code == 200 and len(fake.requests) == 1


# --- the session header --------------------------------------------------------------------


def test_the_session_header_targets_the_callers_session(server, key, client, ada, bob):
    first = post(
        server, key, {"model": "echo", "input": "into 42"}, **{"X-PolyGenix-Session": "42"}
    )
    assert first.status_code == 200 and first.headers["X-PolyGenix-Session"] == "42"
    more = {"model": "echo", "input": "unrelated", "previous_response_id": first.json()["id"]}
    assert post(server, key, more, **{"X-PolyGenix-Session": "42"}).status_code == 200
    assert [n for n, _ in saved(client, ada)] == [42]
    assert len(saved(client, ada)[0][1]) == 4
    # A continuation stays in its chain's session: another number is a 400.
    elsewhere = post(server, key, more, **{"X-PolyGenix-Session": "7"})
    assert elsewhere.status_code == 400
    assert elsewhere.json()["error"]["param"] == "X-PolyGenix-Session"
    bad = post(server, key, {"model": "echo", "input": "x"}, **{"X-PolyGenix-Session": "²"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "X-PolyGenix-Session"
    # Session numbers are each user's own: Bob's 42 is his, made for him; Ada's is untouched.
    bobs = client.post("/api/keys", headers=bob, json={"name": "b"}).json["key"]
    his = post(server, bobs, {"model": "echo", "input": "bob"}, **{"X-PolyGenix-Session": "42"})
    assert his.status_code == 200 and his.headers["X-PolyGenix-Session"] == "42"
    assert saved(client, bob) == [(42, [("bob", False), ("Echo: bob", False)])]
    assert len(saved(client, ada)[0][1]) == 4
