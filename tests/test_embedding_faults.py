"""POST /v1/embeddings under attack and under failing providers: hostile input is a 400 in
OpenAI's shape naming the field, before any provider is called; a provider that fails, cuts its
body, answers 200 with an error or with the wrong vectors is an error mapped as chat's are;
what the provider was used for is counted even then; and requests at once all count."""

import json
import threading

import pytest
import requests

from tests.fake_embeddings import tokens, vector
from tests.gunicorn_server import gunicorn, register_over_http
from tests.helpers import (
    EMBEDDINGS,
    at_once,
    embed,
    in_thread,
    serving,
    usage_rows,
    wait_for,
)


@pytest.fixture
def app(provider_app):
    return provider_app


def refused(response, param: str, status: int = 400):
    assert response.status_code == status, response.data[:300]
    error = response.json["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    return error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "openai", "input": ["x"] * 2049}, "input"),  # a huge count
        ({"model": "openai", "input": "x" * 32_001}, "input"),  # over MAX_MESSAGE_CHARS
        ({"model": "openai", "input": ["ok", "x" * 32_001]}, "input"),
        ({"model": "openai", "input": "a\x00b"}, "input"),
        ({"model": "openai", "input": ["fine", "nul\x00"]}, "input"),
        ({"model": "openai", "input": [[["nested"]]]}, "input"),
        ({"model": "openai", "input": [["a"]]}, "input"),
        ({"model": "openai", "input": {"text": "an object"}}, "input"),
        ({"model": "openai", "input": 42}, "input"),
        ({"model": "openai", "input": True}, "input"),
        ({"model": "openai", "input": None}, "input"),
        ({"model": "openai", "input": ""}, "input"),
        ({"model": "openai", "input": []}, "input"),
        ({"model": "openai", "input": [""]}, "input"),
        ({"model": "openai", "input": [[]]}, "input"),
        ({"model": "openai", "input": ["text", 7]}, "input"),
        ({"model": "openai", "input": [1, -2]}, "input"),
        ({"model": "openai", "input": [1, True]}, "input"),
        ({"model": "openai", "input": [1, 2.5]}, "input"),
        ({"model": "openai", "input": [[1], [2**31]]}, "input"),
        ({"model": "openai", "input": [[1] * 32_001]}, "input"),
        ({"input": "x"}, "model"),
        ({"model": "", "input": "x"}, "model"),
        ({"model": "   ", "input": "x"}, "model"),
        ({"model": "open\x00ai", "input": "x"}, "model"),
        ({"model": "o" * 201, "input": "x"}, "model"),
        ({"model": ["openai"], "input": "x"}, "model"),
        ({"model": "openai", "input": "x", "encoding_format": "binary"}, "encoding_format"),
        ({"model": "openai", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "openai", "input": "x", "dimensions": -3}, "dimensions"),
        ({"model": "openai", "input": "x", "dimensions": "8"}, "dimensions"),
        ({"model": "openai", "input": "x", "dimensions": 1.5}, "dimensions"),
        ({"model": "openai", "input": "x", "dimensions": True}, "dimensions"),
        ({"model": "openai", "input": "x", "dimensions": 10**50}, "dimensions"),
        ({"model": "openai", "input": "x", "user": 5}, "user"),
        ({"model": "openai", "input": "x", "user": "u" * 513}, "user"),
        ({"model": "openai", "input": "x", "task_type": "query"}, "task_type"),
        (["openai", "x"], "body"),
        ("openai", "body"),
    ],
)
def test_hostile_input_is_a_400_naming_the_field(client, ada, fake, body, param):
    response = client.post(EMBEDDINGS, headers=ada, json=body)
    refused(response, param)
    assert fake.requests == []


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "openai", "input": "\\ud800"}',  # a lone surrogate
        b'{"model": "openai", "input": ["ok", "\\udfff tail"]}',
        b'{"model": "openai", "input": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"model": "openai", "input": "x", "dimensions": ' + b"9" * 200 + b"}",
        b'{"model": "openai", "input": "x", "dimensions": NaN}',
        b'{"model": "openai", "input": "cut',
        b"\xff\xfe not utf-8",
    ],
)
def test_malformed_json_is_a_400(client, ada, fake, raw):
    headers = ada | {"Content-Type": "application/json"}
    response = client.post(EMBEDDINGS, headers=headers, data=raw)
    assert response.status_code == 400
    assert response.json["error"]["type"] == "invalid_request_error"
    assert fake.requests == []


def test_a_body_over_the_size_limit_is_a_413(client, ada, fake):
    response = embed(client, ada, model="openai", input=["y" * 30_000] * 40)
    assert response.status_code == 413 and "error" in response.json
    assert fake.requests == []


def test_null_optional_fields_count_as_absent(client, ada, fake):
    body = {"model": "openai", "input": "x", "dimensions": None, "encoding_format": None}
    response = client.post(EMBEDDINGS, headers=ada, json=body | {"user": None})
    assert response.status_code == 200
    assert response.json["data"][0]["embedding"] == vector("x")
    assert fake.requests[-1].body == {"model": "text-embedding-3-small", "input": ["x"]}


def test_the_user_field_is_accepted_and_not_passed_on(client, ada, fake):
    assert embed(client, ada, model="openai", input="x", user="end-user-7").status_code == 200
    assert "user" not in fake.requests[-1].body


# --- provider failures ---------------------------------------------------------------------

OPENAI_BODY = {"object": "list", "model": "m", "usage": {"prompt_tokens": 2, "total_tokens": 2}}


def openai_data(*vectors) -> dict:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return OPENAI_BODY | {"data": data}


FAILURES = {
    # name: (queued replies, status, words of the message)
    "5xx": ([dict(status=500, body={"error": {"message": "boom"}}, times=3)], 502, "HTTP 500"),
    "cut body": ([dict(body=openai_data([0.5] * 500, [0.5] * 500), cut=True, times=3)], 502, ""),
    "200 with an error": (
        [dict(body={"error": {"message": "model overloaded", "code": 503}})],
        502,
        "model overloaded",
    ),
    "too few vectors": ([dict(body=openai_data([0.5, 0.5]))], 502, "1 embeddings for 2 inputs"),
    "too many vectors": (
        [dict(body=openai_data([0.5], [0.25], [0.125]))],
        502,
        "3 embeddings for 2 inputs",
    ),
    "not JSON": ([dict(body=b"<html>gateway</html>")], 502, "no usable reply"),
    "a string in a vector": ([dict(body=openai_data([0.5, "x"], [0.5, 0.5]))], 502, "numbers"),
    "NaN in a vector": (
        [
            dict(
                body=b'{"data": [{"index": 0, "embedding": [NaN]}, {"index": 1, "embedding": [1]}]}'
            )
        ],
        502,
        "no usable reply",
    ),
    "bad base64": ([dict(body=openai_data("not base64!", "AAAAAA=="))], 502, "base64"),
    "repeated index": (
        [
            dict(
                body=OPENAI_BODY
                | {"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}]}
            )
        ],
        502,
        "indexes",
    ),
    "vectors of different sizes": ([dict(body=openai_data([0.5], [0.5, 0.5]))], 502, "sizes"),
    "rejected key": ([dict(status=401, body={"error": {"message": "bad key"}})], 502, "creden"),
    "rate limited for long": (
        [dict(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "60"})],
        429,
        "rate limiting",
    ),
    "quota used up": (
        [dict(status=429, body={"error": {"message": "no", "code": "insufficient_quota"}})],
        503,
        "quota exhausted",
    ),
}


ANSWERED = {"too few vectors", "too many vectors", "vectors of different sizes"}


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_failing_provider_is_mapped_as_chat_failures_are(client, ada, fake, case):
    replies, status, words = FAILURES[case]
    for reply in replies:
        fake.reply(**reply)
    response = embed(client, ada, model="openai", input=["one", "two"])
    assert response.status_code == status, response.json
    error = response.json["error"]
    assert error["type"] == ("rate_limit_error" if status == 429 else "api_error")
    assert words in error["message"]
    assert "test-key-openai" not in response.get_data(as_text=True)
    # An answer with embeddings counts what the provider says it used, even the wrong ones.
    counted = [(r["model"], r["calls"], r["prompt_tokens"]) for r in usage_rows(client, ada)]
    assert counted == ([("openai/m", 1, 2)] if case in ANSWERED else [])


def test_transient_failures_are_retried(client, ada, fake):
    fake.reply(status=503, body={"error": {"message": "busy"}})
    fake.reply(body=openai_data([0.5]), cut=True)
    response = embed(client, ada, model="openai", input="x")
    assert response.status_code == 200 and len(fake.requests) == 3
    assert response.json["data"][0]["embedding"] == vector("x")


@pytest.mark.parametrize(
    ("model", "error_body", "words"),
    [
        (
            "gemini",
            {"error": {"code": 500, "message": "internal", "status": "INTERNAL"}},
            "internal",
        ),
        ("ollama", {"error": "model runner has unexpectedly stopped"}, "runner has"),
        ("mistral", {"object": "error", "message": "Service unavailable"}, "Service unavailable"),
    ],
)
def test_each_providers_error_body_reaches_the_client(client, ada, fake, model, error_body, words):
    fake.reply(status=500, body=error_body, times=3)
    response = embed(client, ada, model=model, input="x")
    assert response.status_code == 502
    assert words in response.json["error"]["message"]
    assert len(fake.requests) == 3  # retried twice, as chat calls are


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"embeddings": [{"values": [0.5]}, {"no": "values"}]}, 502),
        ({"embeddings": "nope"}, 502),
        ({"error": {"code": 429, "message": "Resource has been exhausted", "status": "X"}}, 429),
        ({"error": {"code": 400, "message": "API key not valid", "status": "X"}}, 502),
    ],
)
def test_gemini_answers_without_usable_vectors_count_nothing(client, ada, fake, body, status):
    fake.reply(body=body)
    response = embed(client, ada, model="gemini", input=["one", "two"])
    assert response.status_code == status
    assert usage_rows(client, ada) == []


def test_gemini_with_a_vector_missing_counts_its_estimate(client, ada, fake):
    fake.reply(body={"embeddings": [{"values": [0.5]}]})
    response = embed(client, ada, model="gemini", input=["one", "two"])
    assert response.status_code == 502
    assert "1 embeddings for 2 inputs" in response.json["error"]["message"]
    assert [r["prompt_tokens"] for r in usage_rows(client, ada)] == [2]


def test_a_failure_after_answered_batches_counts_what_they_used(client, ada, fake):
    # Two Gemini batches of 100, each of 100 tokens as PolyGenix counts them (4 characters a
    # token); sent at once, so which one the provider answers is its choice.
    texts = [f"te{n:02d}" for n in range(100)] + [f"TE{n:02d}" for n in range(100)]
    fake.reply()  # one batch: the normal answer
    fake.reply(status=500, body={"error": {"code": 500, "message": "down"}}, times=3)
    response = embed(client, ada, model="gemini", input=texts)
    assert response.status_code == 502 and "down" in response.json["error"]["message"]
    assert len(fake.requests) == 4
    [row] = usage_rows(client, ada)
    assert (row["model"], row["calls"], row["prompt_tokens"]) == (
        "gemini/gemini-embedding-001",
        1,
        100,
    )


def test_batches_of_different_sizes_fail_and_count(client, ada, fake):
    texts = [f"text {n}" for n in range(200)]
    fake.reply()
    fake.reply(body={"embeddings": [{"values": [0.5] * 4}] * 100})
    response = embed(client, ada, model="gemini", input=texts)
    assert response.status_code == 502 and "sizes" in response.json["error"]["message"]
    [row] = usage_rows(client, ada)
    assert row["prompt_tokens"] == sum(-(-len(t) // 4) for t in texts)


def test_batches_are_sent_at_once_and_answered_in_input_order(client, ada, fake):
    texts = [f"text number {n}" for n in range(900)]  # nine Gemini batches
    held = threading.Event()
    fake.reply(hold=held)  # the first batch to arrive is answered last
    answer = in_thread(lambda: embed(client, ada, model="gemini", input=texts))
    # Four are at the provider at once: the held one does not hold the others back.
    wait_for(lambda: len(fake.requests) >= 4, what="four batches at the provider")
    held.set()
    response = answer()
    assert response.status_code == 200
    assert len(fake.requests) == 9
    assert [d["embedding"] for d in response.json["data"]] == [vector(t) for t in texts]


def test_no_batch_starts_once_the_deadline_has_passed(make_app, provider_config, auth, fake):
    client = make_app(provider_config | {"PROVIDER_TIMEOUT": 8.0}).test_client()
    ada = auth.register(client=client)
    # Nine Gemini batches, four at a time, each answered in 5 s, well within its own 8 s:
    # the first four end at 5 s, the next four start before the call's 8 s and end after
    # them, and the ninth would start after them. (Margins of 3 s: a busy machine is slow.)
    fake.reply(delay=5, times=9)
    response = embed(client, ada, model="gemini", input=[f"t{n:03d}" for n in range(900)])
    assert response.status_code == 504
    assert len(fake.requests) == 8
    [row] = usage_rows(client, ada)
    assert (row["calls"], row["prompt_tokens"]) == (1, 800)


# --- at once -------------------------------------------------------------------------------


def test_requests_at_once_each_succeed_and_count(app, client, ada, fake):
    key = client.post("/api/keys", headers=ada, json={"name": "k"}).json["key"]
    results = []

    def call(n):
        response = requests.post(
            base + EMBEDDINGS,
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": "openai",
                "input": [f"caller {n}", "shared"],
                "encoding_format": "base64",
            },
            timeout=30,
        )
        results.append((response.status_code, response.json()))

    with serving(app) as base:
        threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert sorted(status for status, _ in results) == [200] * 8
    tokens = sum(body["usage"]["prompt_tokens"] for _, body in results)
    [row] = usage_rows(client, ada)
    assert (row["calls"], row["prompt_tokens"]) == (8, tokens)
    assert all(json.dumps(body).count('"index"') == 2 for _, body in results)


@pytest.mark.slow
def test_two_workers_racing_at_a_budgets_edge_count_every_call_exactly(tmp_path, fake):
    fake.reset()
    per_call = tokens("racing text")
    budget_calls, racers = 5, 12
    settings = {"OLLAMA_BASE_URL": fake.url, "TOKEN_BUDGET": f"{budget_calls * per_call}/day"}
    with gunicorn(tmp_path, settings) as (base, _):
        headers = register_over_http(base)

        def racer():
            return requests.post(
                base + EMBEDDINGS,
                json={"model": "ollama", "input": "racing text"},
                headers=headers | {"Connection": "close"},
                timeout=30,
            ).status_code

        statuses = at_once(racer, racers)
        assert set(statuses) <= {200, 429}, statuses
        answered = statuses.count(200)
        # Refused only once the budget is used up; beyond it, at most the calls in flight.
        assert budget_calls <= answered <= racers
        assert len(fake.requests) == answered
        body = {"model": "ollama", "input": "late"}
        late = requests.post(base + EMBEDDINGS, json=body, headers=headers, timeout=30)
        assert late.status_code == 429 and late.json()["error"]["code"] == "insufficient_quota"
        report = requests.get(base + "/api/usage?group_by=model", headers=headers, timeout=10)
        [row] = report.json()["rows"]
        assert (row["model"], row["calls"]) == ("ollama/embeddinggemma", answered)
        assert row["prompt_tokens"] == answered * per_call
