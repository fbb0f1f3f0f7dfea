"""Governance: which models each user may use, token and cost budgets, what replies cost, and the
usage reports, through the real API (and a real gunicorn for the race at a budget's edge)."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import openai
import pytest
import requests
from genai_prices import Usage, calc_price
from sqlalchemy import func, select

from config import ConfigError
from polygenix import create_app
from polygenix.extensions import db
from polygenix.governance.policy import Budget, allows, parse_budget
from polygenix.models import Message
from tests.fake_provider import openai_stream
from tests.gunicorn_server import gunicorn, register_over_http
from tests.helpers import (
    FakeClock,
    ask,
    assert_envelope,
    at_once,
    bearer,
    in_thread,
    read_events,
    sample,
    serving,
    stream,
    wait_for,
)
from tests.openai_sdk import openai_sdk
from tests.provider_setup import DEFAULT_MODELS

# Echo's usage is its words: with no system prompt, "hi" in a new session is 1 prompt token and
# "Echo: hi" 2 completion tokens.
PER_HI = 3
QUIET = {"SYSTEM_PROMPT": ""}
# 2026-12-01 is a Tuesday.
TUESDAY_2300 = datetime(2026, 12, 1, 23, 0, tzinfo=UTC).timestamp()


def history(client, headers):
    return client.get("/api/ai_chat/history", headers=headers).json


def usage(client, headers, **query):
    return client.get("/api/usage", headers=headers, query_string=query)


def put_limits(client, admin, user_id, **body):
    return client.put(f"/api/admin/users/{user_id}/limits", headers=admin, json=body)


# --- model access --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "provider", "model", "allowed"),
    [
        (("*",), "openai", "gpt-4.1", True),
        (("groq",), "groq", "llama-3.3-70b-versatile", True),
        (("groq",), "groqish", "x", False),
        (("groq/*",), "groq", "llama-3.1-8b-instant", True),
        (("openai/gpt-4.1*",), "openai", "gpt-4.1-mini", True),
        (("openai/gpt-4.1*",), "openai", "gpt-4o", False),
        (("openrouter/meta-llama/*",), "openrouter", "meta-llama/llama-3.3-70b", True),
        (("OpenAI/*",), "openai", "gpt-4.1", False),  # case-sensitive
        (("echo", "gr*"), "groq", "x", True),
        ((), "echo", "echo", False),
    ],
)
def test_allowlist_patterns(patterns, provider, model, allowed):
    assert allows(patterns, provider, model) is allowed


@pytest.fixture
def echo_only(make_app, provider_config):
    return make_app(
        provider_config
        | {"MODEL_ALLOWLIST": ["echo", "groq/llama-3.1-8b-instant"]}
        | {"MODEL_ALIASES": {"fast": "groq/llama-3.1-8b-instant", "big": "openai/gpt-4.1"}}
        | {"GROQ_MODELS": ["llama-3.1-8b-instant"]}
    ).test_client()


def test_a_model_not_allowed_is_a_403_before_anything_is_stored(echo_only, auth, fake):
    ada = auth.register(client=echo_only)
    refused = ask(echo_only, ada, "secret plans", model="openai/gpt-4.1")
    assert_envelope(refused, 403, "Model 'openai/gpt-4.1' is not allowed for your account")
    # Streamed: the same JSON error, no stream.
    refused = stream(echo_only, ada, "openai/gpt-4.1")
    assert refused.mimetype == "application/json"
    assert_envelope(refused, 403, "not allowed")
    # Aliases and bare providers are resolved first: the message names what they mean.
    assert_envelope(ask(echo_only, ada, "x", model="big"), 403, "'openai/gpt-4.1'")
    groq_default = DEFAULT_MODELS["groq"]
    assert_envelope(ask(echo_only, ada, "x", model="groq"), 403, f"'groq/{groq_default}'")
    assert fake.requests == [] and history(echo_only, ada) == []
    assert ask(echo_only, ada, "ok", model="echo").status_code == 200
    assert ask(echo_only, ada, "ok", model="fast").json["model"].startswith("groq/llama-3.1")


def test_only_allowed_models_are_listed(echo_only, auth):
    ada = auth.register(client=echo_only)
    listed = echo_only.get("/api/ai_chat/models", headers=ada).json
    assert {e["provider"] for e in listed} <= {"echo", "groq"}
    assert [e["id"] for e in listed if e["provider"] == "groq"] == ["groq/llama-3.1-8b-instant"]
    key = echo_only.post("/api/keys", headers=ada, json={"name": "k"}).json["key"]
    ids = {m["id"] for m in echo_only.get("/v1/models", headers=bearer(key)).json["data"]}
    assert "fast" in ids and "big" not in ids and "echo/echo" in ids
    assert not any(i.startswith("openai/") for i in ids)
    gone = echo_only.get("/v1/models/openai/gpt-4.1", headers=bearer(key))
    assert gone.status_code == 404 and gone.json["error"]["code"] == "model_not_found"


def test_v1_refuses_a_model_as_a_permission_error(make_app, provider_config, auth, fake):
    app = make_app(provider_config | {"MODEL_ALLOWLIST": ["echo"]})
    token = auth.tokens(client=app.test_client())["access_token"]
    with serving(app) as base:
        sdk = openai_sdk(base, token)
        with pytest.raises(openai.PermissionDeniedError) as raised:
            sdk.chat.completions.create(
                model="openai/gpt-4.1", messages=[{"role": "user", "content": "hi"}]
            )
    error = raised.value.body
    assert error["type"] == "permission_error" and error["code"] == "model_not_allowed"
    assert error["message"] == "Model 'openai/gpt-4.1' is not allowed for your account"
    assert fake.requests == []


def test_an_admins_list_replaces_the_default_for_that_user_only(client, auth):
    admin = auth.admin()
    ada, bob = auth.register("ada@example.com"), auth.register("bob@example.com")
    ada_id = auth.user_id(ada)
    set_ = put_limits(client, admin, ada_id, models=["groq"])
    assert set_.status_code == 200 and set_.json["models"] == ["groq"]
    assert_envelope(ask(client, ada, "hi"), 403, "Model 'echo/echo' is not allowed")
    assert ask(client, bob, "hi").status_code == 200
    # An empty list: no model at all.
    put_limits(client, admin, ada_id, models=[])
    assert client.get("/api/ai_chat/models", headers=ada).json == []
    assert_envelope(ask(client, ada, "hi"), 403)
    # null: back to MODEL_ALLOWLIST.
    back = put_limits(client, admin, ada_id, models=None)
    assert back.json["models"] is None and back.json["effective"]["models"] == ["*"]
    assert ask(client, ada, "hi").status_code == 200


# --- budgets -------------------------------------------------------------------------------


@pytest.fixture
def clock():
    return FakeClock(TUESDAY_2300)


def test_a_token_budget_refuses_at_its_limit_and_resets_at_midnight_utc(make_app, auth, clock):
    client = make_app(QUIET | {"CLOCK": clock, "TOKEN_BUDGET": f"{2 * PER_HI}/day"}).test_client()
    ada = auth.register(client=client)
    assert ask(client, ada, "hi").status_code == 200
    assert ask(client, ada, "hi").status_code == 200  # used 3 of 6: allowed
    refused = ask(client, ada, "one more")  # used 6 of 6: at the budget
    assert_envelope(refused, 429)
    message = refused.json["message"]
    assert "token budget" in message and "6/day" in message
    assert "2026-12-02T00:00:00+00:00" in message
    assert refused.headers["Retry-After"] == "3600"
    assert len(history(client, ada)) == 2  # nothing stored for the refused request
    assert stream(client, ada, "echo").status_code == 429  # streamed too
    clock.advance(3599)
    assert ask(client, ada, "still today").status_code == 429
    clock.advance(1)
    assert ask(client, ada, "hi").status_code == 200


def test_a_weekly_budget_resets_on_monday_and_a_monthly_one_on_the_first(make_app, auth):
    sunday_night = FakeClock(datetime(2026, 12, 6, 23, 59, 30, tzinfo=UTC).timestamp())
    client = make_app(
        QUIET | {"CLOCK": sunday_night, "TOKEN_BUDGET": "1/week", "COST_BUDGET": "5/month"}
    ).test_client()
    ada = auth.register(client=client)
    assert ask(client, ada, "hi").status_code == 200
    refused = ask(client, ada, "hi")
    assert refused.headers["Retry-After"] == "30"
    assert "2026-12-07T00:00:00+00:00" in refused.json["message"]
    sunday_night.advance(30)
    assert ask(client, ada, "hi").status_code == 200
    budgets = usage(client, ada).json["budget"]
    assert budgets["tokens"] == {
        "limit": "1/week",
        "used": PER_HI,
        "resets_at": "2026-12-14T00:00:00+00:00",
    }
    assert budgets["cost"] == {
        "limit": "5/month",
        "used": 0.0,
        "resets_at": "2027-01-01T00:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("text", "now", "start", "end"),
    [
        ("1/day", datetime(2026, 12, 31, 23, 59, tzinfo=UTC), "2026-12-31", "2027-01-01"),
        ("1/week", datetime(2026, 12, 2, 12, tzinfo=UTC), "2026-11-30", "2026-12-07"),
        ("1/week", datetime(2026, 11, 30, 0, tzinfo=UTC), "2026-11-30", "2026-12-07"),
        ("1/month", datetime(2026, 12, 31, 23, tzinfo=UTC), "2026-12-01", "2027-01-01"),
        ("1/month", datetime(2028, 2, 29, 1, tzinfo=UTC), "2028-02-01", "2028-03-01"),
    ],
)
def test_budget_periods_are_utc_calendar_periods(text, now, start, end):
    first, resets = parse_budget(text, dollars=False).window(now)
    assert (first.isoformat(), resets.date().isoformat()) == (start, end)
    assert resets.tzinfo is UTC and resets.time().isoformat() == "00:00:00"


def test_budget_text_is_checked():
    assert parse_budget(" 20/Month ", dollars=True) == Budget(Decimal(20), "month", "20/month")
    assert parse_budget("unlimited", dollars=False) is None
    assert parse_budget("0.25/day", dollars=True).amount == Decimal("0.25")
    for bad in (
        "1.5/day",
        "10/year",
        "-1/day",
        "1e9/day",
        "day",
        "",
        "10 / day",
        "9" * 17 + "/day",
    ):
        with pytest.raises(ValueError):
            parse_budget(bad, dollars=False)


def test_a_cost_budget_counts_priced_replies(make_app, provider_config, auth, fake):
    # gpt-4o: $2.50 in and $10 out per million tokens; the fake reports 11 in and 7 out.
    one_reply = Decimal(11) * Decimal("2.50") / 10**6 + Decimal(7) * 10 / 10**6
    client = make_app(provider_config | {"COST_BUDGET": "0.0001/day"}).test_client()
    ada = auth.register(client=client)
    assert ask(client, ada, "a", model="openai/gpt-4o").status_code == 200
    assert ask(client, ada, "b", model="openai/gpt-4o").status_code == 200  # 0.0000975 used
    refused = ask(client, ada, "c", model="openai/gpt-4o")
    assert_envelope(refused, 429, "Your cost budget of 0.0001/day is used up")
    assert refused.headers["x-should-retry"] == "false"
    assert len(fake.requests) == 2
    assert usage(client, ada).json["budget"]["cost"]["used"] == pytest.approx(float(2 * one_reply))


def test_an_admin_sets_and_lifts_a_users_budget(make_app, auth):
    client = make_app(QUIET | {"TOKEN_BUDGET": "1000/day"}).test_client()
    admin, ada = auth.admin(client=client), auth.register(client=client)
    ada_id = auth.user_id(ada, client=client)
    assert put_limits(client, admin, ada_id, token_budget="2/day").json["effective"] == {
        "models": ["*"],
        "token_budget": "2/day",
        "cost_budget": "unlimited",
    }
    assert ask(client, ada, "hi").status_code == 200
    assert_envelope(ask(client, ada, "hi"), 429, "token budget of 2/day")
    put_limits(client, admin, ada_id, token_budget="unlimited")
    assert ask(client, ada, "hi").status_code == 200
    assert usage(client, ada).json["budget"]["tokens"] is None
    put_limits(client, admin, ada_id)  # every field null: the defaults again
    assert usage(client, ada).json["budget"]["tokens"]["limit"] == "1000/day"


def test_a_cut_stream_counts_an_estimate_and_store_false_still_counts(
    make_app, provider_config, auth, fake
):
    client = make_app(provider_config | {"TOKEN_BUDGET": "1000000/day"}).test_client()
    ada = auth.register(client=client)
    # A stream cut before the provider reported any usage: counted at 4 characters a token.
    fake.reply(
        chunks=[b'data: {"choices":[{"index":0,"delta":{"content":"abcdefgh"}}]}\n\n'], cut=True
    )
    done = stream(client, ada, "openai", "12345678").get_data(as_text=True)
    assert "event: error" in done
    [row] = usage(client, ada, group_by="model").json["rows"]
    sent = len(provider_config["SYSTEM_PROMPT"]) + len("12345678")
    assert row["prompt_tokens"] == -(-sent // 4) and row["completion_tokens"] == 2
    [reply] = [m for m in history(client, ada)[0]["messages"] if m["is_bot"]]
    assert reply["incomplete"] and reply["usage"]["cost_usd"] is None  # none reported
    # "store": false saves no message but the tokens count.
    key = client.post("/api/keys", headers=ada, json={"name": "k"}).json["key"]
    body = {"model": "echo", "store": False, "messages": [{"role": "user", "content": "a b"}]}
    assert client.post("/v1/chat/completions", headers=bearer(key), json=body).status_code == 200
    assert len(history(client, ada)) == 1
    echo = [
        r for r in usage(client, ada, group_by="model").json["rows"] if r["model"] == "echo/echo"
    ]
    assert echo == [
        {
            "model": "echo/echo",
            "calls": 1,
            "prompt_tokens": 2,
            "completion_tokens": 3,
            "cost_usd": None,
        }
    ]


@pytest.mark.slow
def test_two_workers_racing_at_a_budgets_edge_never_overrun_it_when_calls_use_their_estimate(
    tmp_path,
):
    """Each call reserves its estimate before the provider is called; here (echo, an output cap
    of 2 tokens) a call uses exactly its estimate, so racing calls stop at the budget."""
    budget_calls = 10
    racers = 16
    settings = {
        "SYSTEM_PROMPT": "",
        "TOKEN_BUDGET": f"{budget_calls * PER_HI}/day",
        "MAX_OUTPUT_TOKENS": "2",
        "REASONING_MAX_OUTPUT_TOKENS": "2",
    }
    with gunicorn(tmp_path, settings) as (base, _):
        headers = register_over_http(base)

        def racer():
            return requests.post(
                base + "/api/ai_chat/request",
                json={"content": "hi", "model": "echo"},
                headers=headers | {"Connection": "close"},
                timeout=30,
            ).status_code

        statuses = at_once(racer, racers, timeout=60)
        assert set(statuses) <= {200, 429}, statuses
        stored = statuses.count(200)
        # Refused while the others' reservations fill the budget: some calls are refused
        # before it is used up, but no call is admitted beyond it.
        assert stored <= budget_calls
        while stored < budget_calls:
            late = requests.post(
                base + "/api/ai_chat/request",
                json={"content": "hi", "model": "echo"},
                headers=headers,
                timeout=30,
            )
            assert late.status_code == 200, late.text
            stored += 1
        after = requests.post(
            base + "/api/ai_chat/request",
            json={"content": "late", "model": "echo"},
            headers=headers,
            timeout=30,
        )
        assert after.status_code == 429
        # Exact across the workers: the usage is the stored replies' usage, to the token.
        report = requests.get(base + "/api/usage", headers=headers, timeout=10).json()
        [row] = report["rows"]
        assert row["calls"] == stored
        assert row["prompt_tokens"] + row["completion_tokens"] == stored * PER_HI
        sessions = requests.get(base + "/api/ai_chat/history", headers=headers, timeout=10).json()
        assert len(sessions) == stored
        assert report["budget"]["tokens"]["used"] == stored * PER_HI


# --- cost --------------------------------------------------------------------------------


def test_cost_comes_from_genai_prices_for_a_known_model(client, provider_app, auth, fake):
    client = provider_app.test_client()
    ada = auth.register(client=client)
    reply = ask(client, ada, "price me", model="openai/gpt-4o").json
    expected = calc_price(Usage(input_tokens=11, output_tokens=7), "gpt-4o", provider_id="openai")
    assert reply["usage"]["cost_usd"] == pytest.approx(float(expected.total_price))
    assert reply["usage"]["cost_usd"] == pytest.approx(11 * 2.5e-6 + 7 * 10e-6)
    # Kept with the reply, and in the usage report.
    stored = history(client, ada)[0]["messages"][1]
    assert stored["usage"]["cost_usd"] == reply["usage"]["cost_usd"]
    [row] = usage(client, ada, group_by="model").json["rows"]
    assert row["model"] == "openai/gpt-4o" and row["cost_usd"] == pytest.approx(9.75e-5)


def test_cached_tokens_are_priced_at_the_cache_rate(provider_app, auth, fake):
    client = provider_app.test_client()
    ada = auth.register(client=client)
    body = {
        "id": "c",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 0,
            "prompt_tokens_details": {"cached_tokens": 1000},
        },
    }
    fake.reply(body=body)
    reply = ask(client, ada, "cached", model="openai/gpt-4o").json
    assert reply["usage"]["cost_usd"] == pytest.approx(1000 * 1.25e-6)  # half the input rate


def test_the_prices_file_adds_and_overrides_prices(make_app, provider_config, auth, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps(
            {
                "openai-compatible/local-model": {"input_per_mtok": 1, "output_per_mtok": 2},
                "openai/gpt-4o": {"input_per_mtok": 0.5, "output_per_mtok": 0.5},
                "ollama/*": {"input_per_mtok": 0, "output_per_mtok": 0},
            }
        )
    )
    client = make_app(provider_config | {"MODEL_PRICES_FILE": str(prices)}).test_client()
    ada = auth.register(client=client)
    local = ask(client, ada, "mine", model="openai-compatible").json
    assert local["usage"]["cost_usd"] == pytest.approx(11 * 1e-6 + 7 * 2e-6)
    negotiated = ask(client, ada, "cheaper", model="openai/gpt-4o").json
    assert negotiated["usage"]["cost_usd"] == pytest.approx(18 * 0.5e-6)
    assert ask(client, ada, "free", model="ollama").json["usage"]["cost_usd"] == 0.0


def test_an_unknown_price_is_null(provider_app, auth):
    client = provider_app.test_client()
    ada = auth.register(client=client)
    assert ask(client, ada, "hi").json["usage"]["cost_usd"] is None  # echo
    unknown = ask(client, ada, "hi", model="openai-compatible").json
    assert unknown["usage"]["prompt_tokens"] == 11 and unknown["usage"]["cost_usd"] is None
    rows = usage(client, ada, group_by="model").json["rows"]
    assert [r["cost_usd"] for r in rows] == [None, None]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot be read"),
        ("{not json", "cannot be read"),
        ("[]", "JSON object"),
        ('{"gpt-4o": {"input_per_mtok": 1, "output_per_mtok": 1}}', "provider/model"),
        ('{"openai/x": {"input_per_mtok": 1}}', "exactly"),
        ('{"openai/x": {"input_per_mtok": -1, "output_per_mtok": 1}}', "0 or more"),
        ('{"openai/x": {"input_per_mtok": "1", "output_per_mtok": 1}}', "a number"),
        ('{"openai/x": {"input_per_mtok": 1, "output_per_mtok": 1, "extra": 1}}', "exactly"),
    ],
)
def test_a_bad_prices_file_stops_the_app_at_start(config, tmp_path, content, problem):
    path = tmp_path / "prices.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=problem):
        create_app(config | {"MODEL_PRICES_FILE": str(path)})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOKEN_BUDGET", "lots"),
        ("TOKEN_BUDGET", "1.5/day"),
        ("COST_BUDGET", "20/fortnight"),
        ("MODEL_ALLOWLIST", ["groq/*", "bad pattern"]),
    ],
)
def test_bad_governance_settings_stop_the_app_at_start(config, name, value):
    with pytest.raises(ConfigError, match=name):
        create_app(config | {name: value})


# --- reports -----------------------------------------------------------------------------


@pytest.fixture
def history_of_use(make_app, auth, clock):
    """Ada uses echo on Tuesday and Wednesday, Bob on Wednesday."""
    client = make_app(QUIET | {"CLOCK": clock}).test_client()
    ada = auth.register("ada@example.com", client=client)
    bob = auth.register("bob@example.com", client=client)
    ask(client, ada, "hi")
    clock.advance(3600)  # Wednesday 2026-12-02
    ask(client, ada, "hi")
    ask(client, ada, "hi there")
    ask(client, bob, "hi")
    return client, ada, bob, auth.admin(client=client)


def test_the_callers_usage_by_day_and_by_model(history_of_use):
    client, ada, bob, _ = history_of_use
    by_day = usage(client, ada, group_by="day").json
    assert by_day["rows"] == [
        {
            "day": "2026-12-01",
            "calls": 1,
            "prompt_tokens": 1,
            "completion_tokens": 2,
            "cost_usd": None,
        },
        {
            "day": "2026-12-02",
            "calls": 2,
            "prompt_tokens": 3,
            "completion_tokens": 5,
            "cost_usd": None,
        },
    ]
    assert by_day["budget"] == {"tokens": None, "cost": None}
    assert usage(client, ada, group_by="model").json["rows"] == [
        {
            "model": "echo/echo",
            "calls": 3,
            "prompt_tokens": 4,
            "completion_tokens": 7,
            "cost_usd": None,
        }
    ]
    only_tuesday = usage(client, ada, since="2026-12-01", until="2026-12-01").json["rows"]
    assert [r["day"] for r in only_tuesday] == ["2026-12-01"]
    assert [r["calls"] for r in usage(client, bob).json["rows"]] == [1]


def test_the_admin_report_by_user_model_and_day(history_of_use, auth):
    client, ada, bob, admin = history_of_use
    by_user = client.get("/api/admin/usage", headers=admin).json["rows"]
    ada_id, bob_id = auth.user_id(ada, client=client), auth.user_id(bob, client=client)
    assert [(r["user_id"], r["email"], r["calls"]) for r in by_user] == [
        (ada_id, "ada@example.com", 3),
        (bob_id, "bob@example.com", 1),
    ]
    by_model = client.get("/api/admin/usage?group_by=model", headers=admin).json["rows"]
    assert [(r["model"], r["calls"], r["prompt_tokens"]) for r in by_model] == [("echo/echo", 4, 5)]
    by_day = client.get("/api/admin/usage?group_by=day", headers=admin).json["rows"]
    assert [(r["day"], r["calls"]) for r in by_day] == [("2026-12-01", 1), ("2026-12-02", 3)]
    bobs = client.get(f"/api/admin/usage?group_by=day&user_id={bob_id}", headers=admin).json
    assert [(r["day"], r["calls"]) for r in bobs["rows"]] == [("2026-12-02", 1)]
    assert_envelope(client.get("/api/admin/usage", headers=ada), 403)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=2026-12-05&until=2026-12-01", "since"),
        ("since=2026-13-01", "since"),
        ("until=yesterday", "until"),
        ("group_by=user", "group_by"),
        ("group_by=", "group_by"),
    ],
)
def test_bad_report_queries_are_422s_naming_the_field(client, ada, query, field):
    response = client.get(f"/api/usage?{query}", headers=ada)
    assert_envelope(response, 422)
    assert field in response.json["errors"]["query"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"models": "groq"}, "models"),
        ({"models": ["ok", "not ok"]}, "models"),
        ({"models": ["x" * 201]}, "models"),
        ({"models": ["a"] * 101}, "models"),
        ({"models": [1]}, "models"),
        ({"token_budget": "10/year"}, "token_budget"),
        ({"token_budget": "1.5/day"}, "token_budget"),
        ({"token_budget": 100}, "token_budget"),
        ({"cost_budget": "cheap"}, "cost_budget"),
        ({"cost_budget": "1" * 40 + "/day"}, "cost_budget"),
        ({"cost_budget": "5/day\u0000"}, "cost_budget"),
        ({"budget": "1/day"}, "budget"),
    ],
)
def test_every_limits_field_is_validated(client, auth, body, field):
    admin, ada = auth.admin(), auth.register()
    response = put_limits(client, admin, auth.user_id(ada), **body)
    assert_envelope(response, 422)
    assert field in response.json["errors"]["json"]
    assert put_limits(client, admin, auth.user_id(ada)).status_code == 200


def test_limits_of_a_missing_user_are_a_404_and_put_answers_what_get_does(client, auth):
    admin, ada = auth.admin(), auth.register()
    assert_envelope(client.get("/api/admin/users/999999/limits", headers=admin), 404)
    assert_envelope(put_limits(client, admin, 999999, models=["echo"]), 404)
    ada_id = auth.user_id(ada)
    body = {"models": ["groq/*", "echo"], "token_budget": "100000/day", "cost_budget": "10/month"}
    put = put_limits(client, admin, ada_id, **body)
    got = client.get(f"/api/admin/users/{ada_id}/limits", headers=admin)
    assert put.status_code == got.status_code == 200 and put.json == got.json
    assert got.json | {} == {"user_id": ada_id, **body, "effective": body}
    # A deleted user's limits and usage go with the account.
    client.delete(f"/api/user/{ada_id}", headers=admin)
    assert_envelope(client.get(f"/api/admin/users/{ada_id}/limits", headers=admin), 404)


def test_refusals_and_costs_are_counted_in_the_metrics(make_app, provider_config, auth):
    client = make_app(
        provider_config | {"MODEL_ALLOWLIST": ["echo", "openai"], "CHAT_RATE_LIMIT": "3/minute"}
    ).test_client()
    ada = auth.register(client=client)
    before = client.get("/metrics").get_data(as_text=True)
    ask(client, ada, "x", model="groq")
    ask(client, ada, "x", model="openai/gpt-4o")
    ask(client, ada, "x")
    ask(client, ada, "x")  # over the rate limit
    after = client.get("/metrics").get_data(as_text=True)

    def grew(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    refused = "polygenix_refused_requests_total"
    assert grew(refused, reason="model_not_allowed") == 1
    assert grew(refused, reason="rate_limit") == 1
    cost = grew("polygenix_cost_usd_total", provider="openai", model="other")
    assert cost == pytest.approx(9.75e-5)


# --- CLI ---------------------------------------------------------------------------------


def test_cli_sets_shows_and_resets_a_users_limits(runner, auth, client):
    ada = auth.register()
    shown = runner.invoke(args=["users", "limits", "ada@example.com"])
    assert shown.exit_code == 0
    assert (
        "models: * (default)" in shown.output
        and "token budget: unlimited (default)" in shown.output
    )
    changed = runner.invoke(
        args=[
            "users",
            "limits",
            "ada@example.com",
            "--models",
            "groq/*,echo",
            "--token-budget",
            "100000/day",
        ]
    )
    assert changed.exit_code == 0, changed.output
    assert "models: groq/*, echo (own)" in changed.output
    assert "token budget: 100000/day (own)" in changed.output
    assert_envelope(ask(client, ada, "hi", model="openai"), 403)
    # What is not given stays; --cost-budget alone changes only that.
    runner.invoke(args=["users", "limits", "ada@example.com", "--cost-budget", "10/month"])
    shown = runner.invoke(args=["users", "limits", "ada@example.com"]).output
    assert "token budget: 100000/day (own)" in shown and "cost budget: 10/month (own)" in shown
    bad = runner.invoke(args=["users", "limits", "ada@example.com", "--token-budget", "1/year"])
    assert bad.exit_code != 0 and "--token-budget" in bad.output
    reset = runner.invoke(args=["users", "limits", "ada@example.com", "--reset"])
    assert (
        "models: * (default)" in reset.output and "cost budget: unlimited (default)" in reset.output
    )
    none = runner.invoke(args=["users", "limits", "ada@example.com", "--models", ""])
    assert "models: (none) (own)" in none.output
    missing = runner.invoke(args=["users", "limits", "nobody@example.com"])
    assert missing.exit_code != 0 and "No user" in missing.output


def test_cli_usage_report_in_each_format(make_app, auth, clock):
    app = make_app(QUIET | {"CLOCK": clock})
    client = app.test_client()
    ada = auth.register(client=client)
    ask(client, ada, "hi")
    runner = app.test_cli_runner()
    table = runner.invoke(args=["usage", "report"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == [
        "USER_ID",
        "EMAIL",
        "CALLS",
        "PROMPT_TOKENS",
        "COMPLETION_TOKENS",
        "COST_USD",
    ]
    assert lines[1].split()[1:] == ["ada@example.com", "1", "1", "2"]
    csv_out = runner.invoke(args=["usage", "report", "--by", "model", "--format", "csv"]).output
    assert csv_out.splitlines() == [
        "model,calls,prompt_tokens,completion_tokens,cost_usd",
        "echo/echo,1,1,2,",
    ]
    as_json = runner.invoke(
        args=["usage", "report", "--by", "day", "--format", "json", "--since", "2026-12-01"]
    )
    assert json.loads(as_json.output) == [
        {
            "day": "2026-12-01",
            "calls": 1,
            "prompt_tokens": 1,
            "completion_tokens": 2,
            "cost_usd": None,
        }
    ]
    later = runner.invoke(args=["usage", "report", "--since", "2026-12-02", "--format", "json"])
    assert json.loads(later.output) == []
    bad = runner.invoke(args=["usage", "report", "--since", "last week"])
    assert bad.exit_code != 0 and "--since" in bad.output


# --- what a call used counts, however the turn ends ------------------------------------------


def test_a_stream_whose_session_is_deleted_mid_reply_still_counts(provider_app, auth, fake):
    client = provider_app.test_client()
    ada = auth.register(client=client)
    assert ask(client, ada, "first", session_id=5).status_code == 200
    fake.reply(chunks=openai_stream(["one ", "two ", "three"], "gpt-4.1-mini"), gap=0.3)
    finished = in_thread(
        lambda: read_events(
            stream(provider_app.test_client(), ada, "openai", "second", 5).get_data(as_text=True)
        )
    )
    wait_for(lambda: len(history(client, ada)[0]["messages"]) >= 3, what="the question")
    wait_for(lambda: fake.requests, what="the provider call")
    assert client.delete("/api/ai_chat/5", headers=ada).status_code == 200
    assert finished()[-1][1]["code"] == 404
    rows = usage(client, ada, group_by="model").json["rows"]
    assert [r["model"] for r in rows] == ["echo/echo", "openai/gpt-4.1-mini"]
    assert rows[1]["calls"] == 1 and rows[1]["prompt_tokens"] > 0


def test_a_reply_with_no_text_counts_what_it_used(provider_app, auth, fake):
    client = provider_app.test_client()
    ada = auth.register(client=client)
    thinking = {
        "id": "c",
        "object": "chat.completion",
        "model": "o3",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "", "reasoning_content": "hmm"},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 40, "completion_tokens": 64},
    }
    fake.reply(body=thinking)
    assert_envelope(ask(client, ada, "think", model="openai/o3"), 502, "no usable reply")
    [row] = usage(client, ada, group_by="model").json["rows"]
    assert (row["model"], row["prompt_tokens"], row["completion_tokens"]) == ("openai/o3", 40, 64)
    assert row["cost_usd"] > 0
    # A provider failure with no answer uses nothing.
    fake.reply(500, {"error": {"message": "down"}}, times=3)
    ask(client, ada, "again", model="openai/o3")
    assert usage(client, ada, group_by="model").json["rows"] == [row]


def message_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Message.id)))


@pytest.mark.parametrize("streamed", [False, True])
def test_a_user_deleted_while_the_provider_answers_is_a_401(provider_app, auth, fake, streamed):
    client = provider_app.test_client()
    admin, ada = auth.admin(client=client), auth.register(client=client)
    ada_id = auth.user_id(ada, client=client)
    if streamed:
        fake.reply(chunks=openai_stream(["one ", "two ", "three"], "gpt-4.1-mini"), gap=0.3)
    else:
        fake.reply(delay=0.5)

    def turn():
        other = provider_app.test_client()
        if streamed:
            return read_events(stream(other, ada, "openai", "bye").get_data(as_text=True))
        return ask(other, ada, "bye", model="openai")

    finished = in_thread(turn)
    if streamed:  # the stream has begun: the question is stored
        wait_for(lambda: message_count(provider_app) == 2, what="the question")
    else:
        wait_for(lambda: fake.requests, what="the provider call")
    assert client.delete(f"/api/user/{ada_id}", headers=admin).status_code == 200
    result = finished()
    if streamed:
        assert result[0][0] == "start"
        assert result[-1][0] == "error" and result[-1][1]["code"] == 401
        assert result[-1][1]["message"] == "The account no longer exists"
    else:
        assert_envelope(result, 401, "The account no longer exists")
    assert message_count(provider_app) == 0
    assert client.get("/api/admin/usage", headers=admin).json["rows"] == []


def test_prices_file_keys_match_the_model_asked_for(
    make_app, provider_config, auth, fake, tmp_path
):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"openai/gpt-4o": {"input_per_mtok": 1, "output_per_mtok": 1}}))
    client = make_app(provider_config | {"MODEL_PRICES_FILE": str(prices)}).test_client()
    ada = auth.register(client=client)
    before = client.get("/metrics").get_data(as_text=True)
    dated = {
        "id": "c",
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",  # what OpenAI answers when asked for gpt-4o
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7},
    }
    fake.reply(body=dated)
    reply = ask(client, ada, "hi", model="openai/gpt-4o").json
    assert reply["model"] == "openai/gpt-4o-2024-08-06"
    assert reply["usage"]["cost_usd"] == pytest.approx(18e-6)  # the negotiated price
    # Without an override, genai-prices knows the dated name.
    fake.reply(body=dated | {"model": "gpt-4o-mini-2024-07-18"})
    mini = ask(client, ada, "hi", model="openai/gpt-4o-mini").json
    assert mini["usage"]["cost_usd"] == pytest.approx(11 * 0.15e-6 + 7 * 0.6e-6)
    after = client.get("/metrics").get_data(as_text=True)
    grown = sample(after, "polygenix_cost_usd_total", provider="openai", model="other") - sample(
        before, "polygenix_cost_usd_total", provider="openai", model="other"
    )
    assert grown == pytest.approx(18e-6 + 11 * 0.15e-6 + 7 * 0.6e-6)


def test_edge_dates_and_unicode_digits(client, ada):
    assert client.get("/api/usage?until=0001-01-01", headers=ada).status_code == 200
    assert client.get("/api/usage?since=9999-12-31", headers=ada).status_code == 422
    for text in ("١٢٣/day", "１２/week"):
        with pytest.raises(ValueError):
            parse_budget(text, dollars=False)


def test_a_limits_put_needs_a_body(client, auth):
    admin, ada = auth.admin(), auth.register()
    response = client.put(f"/api/admin/users/{auth.user_id(ada)}/limits", headers=admin)
    assert_envelope(response, 422, "Send the limits as a JSON body")


def test_an_unknown_models_error_lists_only_the_models_the_caller_may_use(
    make_app, provider_config, auth
):
    app = make_app(provider_config | {"MODEL_ALLOWLIST": ["echo", "groq/*"]})
    client = app.test_client()
    ada = auth.register(client=client)
    key = client.post("/api/keys", headers=ada, json={"name": "k"}).json["key"]
    assert ask(client, ada, "first", session_id=1).status_code == 200
    answers = [
        ask(client, ada, "hi", model="nope"),
        client.patch("/api/ai_chat/1", headers=ada, json={"model": "nope"}),
        client.post(
            "/v1/chat/completions",
            headers=bearer(key),
            json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
        ),
    ]
    messages = [answers[0].json["message"], answers[1].json["message"]]
    messages.append(answers[2].json["error"]["message"])
    assert [a.status_code for a in answers] == [422, 422, 404]
    for message in messages:
        assert message == (
            f"Unknown model 'nope'. Available models: echo/echo, groq/{DEFAULT_MODELS['groq']}"
        )
