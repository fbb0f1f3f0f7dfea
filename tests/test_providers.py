"""Every provider client against a fake provider server on 127.0.0.1, through the HTTP API."""

import logging
import re

import pytest
from sqlalchemy import select

from config import PROVIDER_NAMES
from polygenix.extensions import db
from polygenix.models import Message
from polygenix.provider_registry import registry
from polygenix.providers import DEFINITIONS
from tests.helpers import ask, assert_envelope, closed_port, token_counts, wait_for
from tests.provider_setup import (
    BASE_PATHS,
    DEFAULT_MODELS,
    OPENAI_FAMILY,
    SYSTEM,
    key_of,
)


@pytest.fixture
def app(provider_app):
    return provider_app


@pytest.fixture
def client_with_user(make_app, auth):
    """A fresh app on these settings (read now) and a registered user's bearer headers."""

    def make(settings, email="ada@example.com"):
        client = make_app(settings).test_client()
        return client, auth.register(email, client=client)

    return make


def test_one_key_is_enough_for_the_originals_call(client_with_user, config, fake, monkeypatch):
    """Only GROQ_API_KEY and GROQ_BASE_URL set: the original client's request just works."""
    fake.reset()
    monkeypatch.setenv("GROQ_API_KEY", "gsk-only-this-one")
    monkeypatch.setenv("GROQ_BASE_URL", fake.url + "/openai/v1")
    client, headers = client_with_user(config)
    response = client.post(
        "/api/ai_chat/request",
        headers=headers,
        json={"content": "whats the time now! ", "model": "groq", "session_id": None},
    )
    assert response.status_code == 200, response.json
    assert response.json["content"] == "Hello from llama-3.3-70b-versatile"
    assert response.json["session_id"] == 1 and response.json["is_bot"] is True
    assert fake.requests[-1].headers["Authorization"] == "Bearer gsk-only-this-one"


def test_registry_has_every_configured_provider(app):
    assert set(DEFINITIONS) == set(PROVIDER_NAMES) | {"echo"}
    with app.app_context():
        assert set(registry()) == set(DEFINITIONS)


def expected_request(name, model):
    """The exact path, auth headers and body each provider's API wants for a two-turn chat."""
    turns = [("user", "Hi"), ("assistant", "Hello from " + model), ("user", "What is 2+2?")]
    if name in OPENAI_FAMILY or name == "ollama":
        body = {
            "model": model,
            "messages": [{"role": "system", "content": SYSTEM}]
            + [{"role": r, "content": c} for r, c in turns],
        }
        if name == "ollama":
            return "/api/chat", {}, body | {"stream": False, "options": {"num_predict": 4096}}
        cap = "max_completion_tokens" if name in {"openai", "groq"} else "max_tokens"
        body[cap] = 4096  # MAX_OUTPUT_TOKENS
        auth = {"Authorization": f"Bearer {key_of(name)}"} if name != "openai-compatible" else {}
        if name == "openrouter":
            auth["X-Title"] = "PolyGenix"
        return BASE_PATHS[name] + "/chat/completions", auth, body
    if name == "anthropic":
        body = {
            "model": model,
            "max_tokens": 4096,
            "system": SYSTEM,
            "messages": [{"role": r, "content": c} for r, c in turns],
        }
        return "/v1/messages", {"x-api-key": key_of(name), "anthropic-version": "2023-06-01"}, body
    body = {
        "contents": [
            {"role": {"user": "user", "assistant": "model"}[r], "parts": [{"text": c}]}
            for r, c in turns
        ],
        "systemInstruction": {"parts": [{"text": SYSTEM}]},
        # gemini-2.5-flash reasons: the larger cap, and its thoughts asked for.
        "generationConfig": {"maxOutputTokens": 32768, "thinkingConfig": {"includeThoughts": True}},
    }
    path = f"/v1beta/models/{model}:generateContent"
    return path, {"x-goog-api-key": key_of(name)}, body


USAGE = {
    "openai": (11, 7),
    "anthropic": (12, 8),
    "gemini": (13, 9),
    "ollama": (14, 10),
}


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_each_provider_speaks_its_wire_format(client, ada, fake, name):
    model = DEFAULT_MODELS[name]
    assert ask(client, ada, "Hi", model=name, session_id=1).status_code == 200
    response = ask(client, ada, "What is 2+2?", model=name, session_id=1)
    assert response.status_code == 200, response.json

    path, auth_headers, body = expected_request(name, model)
    sent = fake.requests[-1]
    assert sent.path == path
    assert sent.body == body
    for header, value in auth_headers.items():
        assert sent.headers[header] == value
    if not auth_headers.get("Authorization"):
        assert "Authorization" not in sent.headers
    assert sent.headers["Content-Type"] == "application/json"

    reply = response.json
    assert reply["content"] == f"Hello from {model}"
    assert reply["model"] == f"{name}/{model}"
    prompt, completion = USAGE.get(name, USAGE["openai"])
    assert token_counts(reply["usage"]) == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "reasoning_tokens": None,
        "cached_tokens": None,
    }
    assert reply["finish_reason"] == "stop"


def test_reply_stores_usage_and_latency(client, ada, app, fake):
    fake.reply(delay=0.05)
    assert ask(client, ada, model="anthropic").status_code == 200
    with app.app_context():
        reply = db.session.scalar(select(Message).where(Message.is_bot))
    assert reply.model == "anthropic/claude-haiku-4-5"
    assert (reply.prompt_tokens, reply.completion_tokens) == (12, 8)
    assert reply.finish_reason == "stop"
    assert reply.latency_ms >= 50


def test_ollama_sends_its_key_as_bearer_when_set(client_with_user, provider_config, fake):
    with_key = provider_config | {"OLLAMA_API_KEY": "ollama-secret"}
    client, headers = client_with_user(with_key)
    assert ask(client, headers, model="ollama").status_code == 200
    assert fake.requests[-1].headers["Authorization"] == "Bearer ollama-secret"


@pytest.mark.parametrize(
    ("model", "provider", "model_id"),
    [
        ("groq", "groq", "llama-3.3-70b-versatile"),
        ("GROQ", "groq", "llama-3.3-70b-versatile"),
        ("groq/llama-3.1-8b-instant", "groq", "llama-3.1-8b-instant"),
        (
            "openrouter/meta-llama/llama-3.1-70b-instruct",
            "openrouter",
            "meta-llama/llama-3.1-70b-instruct",
        ),
        ("deepseek r1", "deepseek", "deepseek-reasoner"),
        ("claude sonet", "anthropic", "claude-haiku-4-5"),
        ("Claude Sonnet", "anthropic", "claude-haiku-4-5"),
        ("claude", "anthropic", "claude-haiku-4-5"),
        ("gemini/gemini-2.5-pro", "gemini", "gemini-2.5-pro"),
    ],
)
def test_model_names_and_aliases(client, ada, fake, model, provider, model_id):
    response = ask(client, ada, model=model)
    assert response.status_code == 200, response.json
    assert response.json["model"] == f"{provider}/{model_id}"
    sent = fake.requests[-1]
    if provider == "gemini":
        assert sent.path.endswith(f"/models/{model_id}:generateContent")
    else:
        assert sent.body["model"] == model_id


def test_configured_aliases_and_default_models(
    client_with_user, provider_config, fake, monkeypatch
):
    monkeypatch.setenv(
        "MODEL_ALIASES", "fast=groq/llama-3.1-8b-instant, Smart = anthropic/claude-sonnet-4-5"
    )
    monkeypatch.setenv("GROQ_DEFAULT_MODEL", "from-env")
    client, headers = client_with_user(provider_config)
    assert ask(client, headers, model="FAST").json["model"] == "groq/llama-3.1-8b-instant"
    assert ask(client, headers, model="smart").json["model"] == "anthropic/claude-sonnet-4-5"
    assert ask(client, headers, model="groq").json["model"] == "groq/from-env"


def test_models_endpoint_lists_defaults_extras_and_availability(
    client_with_user, config, monkeypatch, fake
):
    monkeypatch.setenv("GROQ_API_KEY", "gsk-listing-secret")
    monkeypatch.setenv("GROQ_MODELS", "llama-3.1-8b-instant, llama-3.3-70b-versatile")
    monkeypatch.setenv("GROQ_BASE_URL", fake.url + "/openai/v1")  # never the internet
    client, headers = client_with_user(config)
    response = client.get("/api/ai_chat/models", headers=headers)
    assert "gsk-listing-secret" not in response.get_data(as_text=True)
    models = response.json
    by_id = {m["id"]: m for m in models}
    assert by_id["groq/llama-3.3-70b-versatile"] == {
        "id": "groq/llama-3.3-70b-versatile",
        "provider": "groq",
        "model": "llama-3.3-70b-versatile",
        "default": True,
        "available": True,
        "unavailable_reason": None,
    }
    assert by_id["groq/llama-3.1-8b-instant"]["default"] is False
    assert by_id["groq/llama-3.1-8b-instant"]["available"] is True
    assert by_id["openai/gpt-4.1-mini"]["available"] is False
    assert by_id["anthropic/claude-haiku-4-5"]["available"] is False
    assert by_id["openai-compatible"] == {
        "id": "openai-compatible",
        "provider": "openai-compatible",
        "model": None,
        "default": False,
        "available": False,
        "unavailable_reason": "not configured: set OPENAI_COMPATIBLE_BASE_URL",
    }


def test_openai_compatible_works_with_a_named_model_and_no_default(client_with_user, config, fake):
    fake.reset()
    settings = {"OPENAI_COMPATIBLE_BASE_URL": fake.url + "/v1"}
    client, headers = client_with_user(config | settings)
    response = ask(client, headers, model="openai-compatible/qwen2.5-7b-instruct")
    assert response.status_code == 200, response.json
    assert fake.requests[-1].body["model"] == "qwen2.5-7b-instruct"
    assert "Authorization" not in fake.requests[-1].headers  # no key set, none sent
    body = assert_envelope(ask(client, headers, model="openai-compatible"), 503)
    assert "OPENAI_COMPATIBLE_DEFAULT_MODEL" in body["message"]


def test_missing_key_is_503_naming_the_variable(client_with_user, config, fake):
    fake.reset()
    client, headers = client_with_user(config)
    body = assert_envelope(ask(client, headers, model="groq"), 503)
    assert "GROQ_API_KEY" in body["message"]
    body = assert_envelope(ask(client, headers, model="openai-compatible"), 503)
    assert "OPENAI_COMPATIBLE_BASE_URL" in body["message"]
    assert fake.requests == []


# --- the failure table, through the HTTP API ------------------------------------------------


def failed_user_message(app):
    with app.app_context():
        return db.session.scalars(select(Message).order_by(Message.id)).all()[-1]


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_is_502_without_retry(client, ada, fake, app, status):
    fake.reply(status, {"error": {"message": f"Invalid API Key {key_of('groq')}"}})
    response = ask(client, ada, model="groq")
    body = assert_envelope(response, 502, "rejected the configured credentials")
    assert key_of("groq") not in response.get_data(as_text=True)
    assert len(fake.requests) == 1
    stored = failed_user_message(app)
    assert not stored.is_bot and stored.error == body["message"]


def test_gemini_invalid_key_400_is_502(client, ada, fake):
    fake.reply(
        400,
        {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            }
        },
    )
    assert_envelope(ask(client, ada, model="gemini"), 502, "rejected the configured credentials")
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("model", "status", "body"),
    [
        (
            "groq/nope",
            404,
            {"error": {"message": "The model `nope` does not exist", "code": "model_not_found"}},
        ),
        (
            "anthropic/nope",
            404,
            {"type": "error", "error": {"type": "not_found_error", "message": "model: nope"}},
        ),
        ("ollama/nope", 404, {"error": "model 'nope' not found"}),
        ("openai/nope", 400, {"error": {"message": "no such model", "code": "model_not_found"}}),
    ],
)
def test_model_not_found_is_422_naming_the_model(client, ada, fake, model, status, body):
    fake.reply(status, body)
    response = assert_envelope(ask(client, ada, model=model), 422)
    assert "'nope'" in response["message"] and "not found" in response["message"]
    assert len(fake.requests) == 1


def test_429_is_retried_then_answered_with_retry_after(client, ada, fake, caplog):
    # A wait within PROVIDER_MAX_RETRY_WAIT (0.05 s here) is waited out, then retried (a longer
    # one goes to the client at once: test_fidelity.py).
    fake.reply(429, {"error": {"message": "Rate limit reached"}}, {"retry-after-ms": "40"}, times=3)
    caplog.set_level(logging.WARNING, "polygenix.providers.retry")
    response = ask(client, ada, model="groq")
    assert_envelope(response, 429, "rate limiting")
    assert response.headers["Retry-After"] == "1"
    assert len(fake.requests) == 3  # the first try and PROVIDER_MAX_RETRIES=2 more
    waits = re.findall(r"retrying in ([0-9.]+) s", caplog.text)
    assert waits == ["0.04", "0.04"]


def test_429_then_success(client, ada, fake, caplog):
    fake.reply(429, {"error": {"message": "slow down"}}, {"retry-after-ms": "30"})
    caplog.set_level(logging.WARNING, "polygenix.providers.retry")
    response = ask(client, ada, model="openai")
    assert response.status_code == 200
    assert len(fake.requests) == 2
    assert re.findall(r"retrying in ([0-9.]+) s", caplog.text) == ["0.03"]
    gap = fake.requests[1].at - fake.requests[0].at
    assert gap >= 0.03


def test_gemini_retry_info_delay_is_honoured(client_with_user, provider_config, fake, caplog):
    client, user = client_with_user(provider_config | {"PROVIDER_MAX_RETRY_WAIT": 10.0})
    fake.reply(
        429,
        {
            "error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota).",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.1s"}
                ],
            }
        },
    )
    caplog.set_level(logging.WARNING, "polygenix.providers.retry")
    assert ask(client, user, model="gemini").status_code == 200
    assert re.findall(r"retrying in ([0-9.]+) s", caplog.text) == ["0.10"]


@pytest.mark.parametrize(("name", "status"), [("groq", 500), ("openai", 503), ("anthropic", 529)])
def test_server_errors_are_retried_then_502(client, ada, fake, name, status):
    fake.reply(status, {"error": {"message": "overloaded"}}, times=3)
    body = assert_envelope(ask(client, ada, model=name), 502, f"HTTP {status}")
    assert "overloaded" in body["message"]
    assert len(fake.requests) == 3


def test_server_error_then_success(client, ada, fake, caplog):
    fake.reply(502, b"<html>bad gateway</html>")
    caplog.set_level(logging.WARNING, "polygenix.providers.retry")
    assert ask(client, ada, model="mistral").status_code == 200
    assert len(fake.requests) == 2
    [wait] = re.findall(r"retrying in ([0-9.]+) s", caplog.text)
    assert 0 <= float(wait) <= 0.05  # jittered exponential backoff, capped


def test_other_4xx_is_502_without_retry(client, ada, fake):
    fake.reply(400, {"error": {"message": "messages: too long"}})
    body = assert_envelope(
        ask(client, ada, model="deepseek"), 502, "rejected the request (HTTP 400)"
    )
    assert "too long" in body["message"]
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("groq", b"not json at all"),
        ("groq", b""),
        ("groq", b"[1, 2]"),
        ("groq", {"choices": []}),
        ("openai", {"choices": [{"message": {"role": "assistant", "content": None}}]}),
        ("anthropic", {"content": [], "stop_reason": "end_turn"}),
        ("gemini", {"promptFeedback": {"blockReason": "SAFETY"}}),
        ("ollama", {"message": {"role": "assistant"}, "done": True}),
    ],
)
def test_unusable_bodies_are_502(client, ada, fake, app, name, body):
    fake.reply(200, body)
    assert_envelope(ask(client, ada, model=name), 502, "no usable reply")
    assert len(fake.requests) == 1
    assert failed_user_message(app).error is not None


def test_deadline_is_504(client_with_user, provider_config, fake):
    client, user = client_with_user(provider_config | {"PROVIDER_TIMEOUT": 0.3})
    fake.reply(delay=1.0)
    assert_envelope(ask(client, user, model="groq"), 504, "did not answer in time")
    # The fake records the request in its own thread, which a loaded machine may run late.
    wait_for(lambda: fake.requests, what="the provider call")
    assert len(fake.requests) == 1  # not retried


def test_connection_refused_is_503_after_retries(client_with_user, provider_config, caplog):
    refused = f"http://127.0.0.1:{closed_port()}/openai/v1"
    client, user = client_with_user(provider_config | {"GROQ_BASE_URL": refused})
    caplog.set_level(logging.WARNING, "polygenix.providers.retry")
    assert_envelope(ask(client, user, model="groq"), 503, "could not be reached")
    assert len(re.findall(r"retrying in", caplog.text)) == 2


@pytest.fixture
def proxied(fake, monkeypatch):
    """The fake provider as the environment's HTTP proxy, with 127.0.0.1 exempt (read when an
    app is made)."""
    for name, value in (("http_proxy", fake.url), ("no_proxy", "127.0.0.1")):
        monkeypatch.setenv(name, value)
        monkeypatch.setenv(name.upper(), value)


def test_provider_calls_use_the_environments_proxy_settings(
    client_with_user, provider_config, fake, proxied
):
    far_away = provider_config | {"GROQ_BASE_URL": "http://provider.example/openai/v1"}
    client, user = client_with_user(far_away)
    assert ask(client, user, model="groq").status_code == 200
    # A forward proxy is sent the whole URL.
    assert fake.requests[-1].path == "http://provider.example/openai/v1/chat/completions"
    client, user = client_with_user(provider_config, "bob@example.com")
    assert ask(client, user, model="groq").status_code == 200
    assert fake.requests[-1].path == "/openai/v1/chat/completions"  # NO_PROXY: straight there


def test_a_providers_cookies_are_not_carried_to_the_next_call(client, ada, auth, fake):
    # One provider connection pool serves every user: what one call was handed (a CDN's
    # cookie, say) must not go out with another user's call.
    fake.reply(body=None, headers={"Set-Cookie": "__cf_bm=first-user; Path=/"})
    assert ask(client, ada, model="openai").status_code == 200
    assert ask(client, auth.register("bob@example.com"), model="openai").status_code == 200
    assert "Cookie" not in fake.requests[-1].headers
    assert fake.requests[-1].headers["User-Agent"] == "PolyGenix/0.1"


def test_keys_never_reach_the_client_or_the_log(client, ada, fake, caplog):
    secret = key_of("openai")
    fake.reply(
        400, {"error": {"message": f"bad request for key {secret} and sk-proj-abcdef123456"}}
    )
    caplog.set_level(logging.DEBUG)
    response = ask(client, ada, model="openai")
    text = response.get_data(as_text=True)
    assert secret not in text and "sk-proj-abcdef123456" not in text
    assert "[redacted]" in text
    assert secret not in caplog.text


def test_failed_turn_is_kept_flagged_and_left_out_of_context(client, ada, fake):
    fake.reply(500, {"error": {"message": "boom"}}, times=3)
    assert ask(client, ada, "lost question", model="groq", session_id=5).status_code == 502
    assert ask(client, ada, "next question", model="groq", session_id=5).status_code == 200
    sent = fake.requests[-1].body["messages"]
    assert [m["content"] for m in sent] == [SYSTEM, "next question"]
    messages = client.get("/api/ai_chat/5", headers=ada).json["messages"]
    assert [(m["content"], m["failed"]) for m in messages] == [
        ("lost question", True),
        ("next question", False),
        ("Hello from llama-3.3-70b-versatile", False),
    ]
    assert "HTTP 500" in messages[0]["error"]


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_list_shows_configuration_without_keys(make_app, provider_config, fake):
    runner = make_app(provider_config | {"OPENAI_API_KEY": None}).test_cli_runner()
    result = runner.invoke(args=["providers", "list"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert set(lines) == set(DEFINITIONS)
    assert "yes" in lines["groq"] and fake.url + "/openai/v1" in lines["groq"]
    assert "llama-3.3-70b-versatile" in lines["groq"]
    assert "no (set OPENAI_API_KEY)" in lines["openai"]
    assert "test-key" not in result.output


def test_cli_check_one_provider(runner, fake):
    result = runner.invoke(args=["providers", "check", "groq"])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"groq: ok \(llama-3.3-70b-versatile, \d+ ms\)\n", result.output)
    assert fake.requests[-1].body["messages"] == [
        {"role": "user", "content": "Reply with the word OK."}
    ]


def test_cli_check_every_configured_provider(runner, fake):
    result = runner.invoke(args=["providers", "check"])
    assert result.exit_code == 0, result.output
    assert sorted(line.split(":")[0] for line in result.output.splitlines()) == sorted(DEFINITIONS)
    assert len(fake.requests) == len(PROVIDER_NAMES)


def test_cli_check_reports_failures(runner, fake, make_app, provider_config):
    fake.reply(401, {"error": {"message": "bad key"}})
    result = runner.invoke(args=["providers", "check", "ANTHROPIC"])
    assert result.exit_code == 1
    assert "anthropic: error: anthropic rejected the configured credentials" in result.output
    runner = make_app(provider_config | {"GEMINI_API_KEY": None}).test_cli_runner()
    result = runner.invoke(args=["providers", "check", "gemini"])
    assert result.exit_code == 1
    assert "gemini: not configured (set GEMINI_API_KEY)" in result.output
    result = runner.invoke(args=["providers", "check", "nope"])
    assert result.exit_code != 0 and "Unknown provider 'nope'" in result.output


def test_a_body_cut_mid_reply_is_retried(client, ada, fake, app):
    fake.reply(cut=True)
    response = ask(client, ada, "Are you whole?", model="openai")
    assert response.status_code == 200, response.json
    assert response.json["content"] == "Hello from gpt-4.1-mini"
    assert len(fake.requests) == 2


@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini", "ollama"])
def test_a_body_cut_every_time_is_a_502_and_the_turn_is_flagged(client, ada, fake, app, name):
    fake.reply(cut=True, times=3)
    body = assert_envelope(ask(client, ada, "Are you whole?", model=name), 502, "stopped answering")
    assert len(fake.requests) == 3  # the first try and PROVIDER_MAX_RETRIES=2 more
    stored = failed_user_message(app)
    assert (stored.is_bot, stored.content) == (False, "Are you whole?")
    assert stored.error == body["message"]
