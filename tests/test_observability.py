"""Metrics (Prometheus) and logs (one line per request, JSON on demand, X-Request-ID)."""

import json
import logging
import re

import pytest
import requests

from polygenix.logs import JSONFormatter, TextFormatter
from tests.gunicorn_server import gunicorn
from tests.helpers import PASSWORD, ask, assert_envelope, sample


def test_metrics_count_requests_and_provider_calls(client, auth):
    headers = auth.register()
    before = client.get("/metrics").get_data(as_text=True)
    for _ in range(3):
        client.get("/api/ai_chat/home", headers=headers)
    client.get("/api/ai_chat/1", headers=headers)  # a 404
    body = {"content": "one two three", "model": "echo"}
    client.post("/api/ai_chat/request", headers=headers, json=body)
    after = client.get("/metrics")
    assert after.mimetype == "text/plain"
    text = after.get_data(as_text=True)

    def grew(name, **labels):
        return sample(text, name, **labels) - sample(before, name, **labels)

    home = {"endpoint": "/api/ai_chat/home", "method": "GET"}
    assert grew("polygenix_http_requests_total", status="200", **home) == 3
    assert grew("polygenix_http_request_duration_seconds_count", **home) == 3
    assert (
        grew(
            "polygenix_http_requests_total",
            endpoint="/api/ai_chat/{chat_id}",
            method="GET",
            status="404",
        )
        == 1
    )
    echo = {"provider": "echo", "model": "echo"}
    assert grew("polygenix_provider_calls_total", outcome="ok", **echo) == 1
    assert grew("polygenix_provider_latency_seconds_count", provider="echo") == 1
    assert grew("polygenix_tokens_total", direction="out", **echo) == 4  # "Echo: one two three"
    assert grew("polygenix_tokens_total", direction="in", **echo) > 3


def test_user_chosen_model_names_do_not_become_labels(client, auth):
    headers = auth.register()
    body = {"content": "hi", "model": "echo/something-made-up-1234"}
    client.post("/api/ai_chat/request", headers=headers, json=body)
    text = client.get("/metrics").get_data(as_text=True)
    assert "something-made-up" not in text
    assert (
        sample(text, "polygenix_provider_calls_total", provider="echo", model="other", outcome="ok")
        >= 1
    )


def test_open_streams_gauge(client, auth):
    headers = auth.register()
    stream = client.post(
        "/api/ai_chat/request",
        headers=headers,
        json={"content": "a b c d e f", "model": "echo", "stream": True},
        buffered=False,
    )
    chunks = iter(stream.response)
    next(chunks), next(chunks)  # start, first delta: the stream is open
    assert sample(client.get("/metrics").get_data(as_text=True), "polygenix_open_streams") == 1
    stream.close()
    assert sample(client.get("/metrics").get_data(as_text=True), "polygenix_open_streams") == 0


def test_metrics_token_and_switch(make_app):
    guarded = make_app({"METRICS_TOKEN": "scrape-secret"}).test_client()
    assert_envelope(guarded.get("/metrics"), 401)
    assert_envelope(guarded.get("/metrics", headers={"Authorization": "Bearer nope"}), 401)
    ok = guarded.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert ok.status_code == 200 and "polygenix_http_requests_total" in ok.get_data(as_text=True)
    off = make_app({"METRICS_ENABLED": False}).test_client()
    assert_envelope(off.get("/metrics"), 404)


@pytest.mark.slow
def test_metrics_are_summed_across_gunicorn_workers(tmp_path):
    with gunicorn(tmp_path) as (base, _):
        with requests.Session() as http:
            for _ in range(40):
                assert http.get(base + "/api/auth/me").status_code == 401
        # Fresh connections, so different workers answer; every one sees all 40.
        totals = {
            sample(
                requests.get(base + "/metrics", timeout=5).text,
                "polygenix_http_requests_total",
                endpoint="/api/auth/me",
                method="GET",
                status="401",
            )
            for _ in range(6)
        }
    assert totals == {40.0}


def request_lines(caplog):
    return [r for r in caplog.records if r.name == "polygenix.request"]


def test_one_json_line_per_request_with_its_fields(client, auth, caplog):
    caplog.set_level(logging.INFO, "polygenix")
    headers = auth.register()
    caplog.clear()
    client.post(
        "/api/ai_chat/request",
        headers=headers | {"X-Request-ID": "trace-123"},
        json={"content": "secret words here", "model": "echo"},
    )
    [record] = request_lines(caplog)
    line = json.loads(JSONFormatter().format(record))
    assert line["request_id"] == "trace-123"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/api/ai_chat/request", 200)
    assert line["user_id"] == 1 and line["duration_ms"] >= 0
    assert (line["provider"], line["model"], line["outcome"]) == ("echo", "echo", "ok")
    assert line["completion_tokens"] == 4 and line["provider_latency_ms"] >= 0
    assert {"timestamp", "level", "logger", "message"} <= set(line)
    assert "secret words" not in caplog.text


def test_a_streamed_turns_line_is_written_when_the_stream_ends(client, auth, caplog):
    caplog.set_level(logging.INFO, "polygenix")
    headers = auth.register()
    caplog.clear()
    response = client.post(
        "/api/ai_chat/request",
        headers=headers,
        json={"content": "a b c d e f", "model": "echo", "stream": True},
    )
    assert b"event: done" in response.get_data()
    assert request_lines(caplog) == []  # the server has not closed the response yet
    response.close()
    [record] = request_lines(caplog)
    line = json.loads(JSONFormatter().format(record))
    assert (line["method"], line["path"], line["status"]) == ("POST", "/api/ai_chat/request", 200)
    assert (line["provider"], line["model"], line["outcome"]) == ("echo", "echo", "ok")
    assert line["provider_latency_ms"] <= line["duration_ms"]


def test_request_ids_are_echoed_or_made(client):
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-1.2:3"}).headers["X-Request-ID"]
        == "abc-1.2:3"
    )
    for bad in ["", "has space", "x" * 200, "inject\r\nheader"]:
        made = client.get("/healthz", headers={"X-Request-ID": bad} if "\r" not in bad else {})
        assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])


def test_logs_never_hold_secrets(client, auth, caplog):
    caplog.set_level(logging.DEBUG)
    token = auth.tokens()["access_token"]
    client.post("/api/auth/login", data={"username": "ada@example.com", "password": PASSWORD})
    client.get(f"/api/auth/verify-token/{token}")
    paths = [r.path for r in request_lines(caplog)]
    assert "/api/auth/verify-token/[redacted]" in paths
    assert token not in caplog.text and PASSWORD not in caplog.text


@pytest.mark.parametrize("stream", [False, True])
def test_provider_gets_the_request_id(provider_app, fake, auth, stream):
    client = provider_app.test_client()
    ada = auth.register(client=client)
    response = ask(client, ada | {"X-Request-ID": "req-42"}, "hi", model="groq", stream=stream)
    assert response.status_code == 200
    response.get_data()
    assert fake.requests[-1].headers["X-Request-ID"] == "req-42"


def test_metrics_labels_come_from_closed_sets(client):
    """Made-up methods and paths, unauthenticated, add no label values: `other` and
    `unmatched` stand for all of them."""

    def made_up(names):
        for n in names:
            client.open(f"/api/made-up-{n}", method=f"BREW{n}")
            client.get(f"/no/such/path/{n}")
        return client.get("/metrics").get_data(as_text=True)

    before = client.get("/metrics").get_data(as_text=True)
    first = made_up(range(100))
    second = made_up(range(100, 200))
    assert "BREW" not in second and "made-up" not in second and "/no/such" not in second
    # A hundred more made-up requests change counts, never the set of samples.
    assert len(second) - len(first) < 200

    def grew(**labels):
        labels = {"endpoint": "unmatched"} | labels
        name = "polygenix_http_requests_total"
        return sample(second, name, **labels) - sample(before, name, **labels)

    assert grew(method="other", status="404") + grew(method="other", status="405") == 200
    assert grew(method="GET", status="404") == 200


def test_a_token_in_a_path_is_never_logged_however_it_is_spelled(client, auth, caplog):
    caplog.set_level(logging.DEBUG)
    token = auth.tokens()["access_token"]
    for path in (
        f"/api//auth/verify-token/{token}",
        f"//api/auth/verify-token/{token}",
        f"/api/auth/verify-token/{token}/",
        f"/api/auth//verify-token/{token}",
        f"/API/auth/verify-token/{token}",
        f"/api/auth/verify-token/{token}/x",
    ):
        response = client.get(path)
        # Never a redirect, which would repeat the token in its Location and its own log line.
        assert response.status_code == 404, path
        assert "Location" not in response.headers
    assert client.get(f"/api/auth/verify-token/{token}").status_code == 200
    assert token not in caplog.text
    assert token.split(".")[1] not in caplog.text


def test_text_log_lines_cannot_be_forged_through_the_path(client, caplog):
    caplog.set_level(logging.INFO, "polygenix")
    forged = "INFO polygenix.request: GET /api/admin 200 user_id=1"
    client.get("/nothing%0a" + forged.replace(" ", "%20") + "%0d%0a%1b[2J%5C")
    [record] = request_lines(caplog)
    line = TextFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "GET /nothing\\x0a" + forged + "\\x0d\\x0a\\x1b[2J\\\\ 404" in line
    assert "path=/nothing\\x0a" in line
