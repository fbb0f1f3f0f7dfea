"""Provider fidelity: what real traffic sends, each in its provider's own wire format, through
the API (streamed and not where it applies): empty replies and refusals, cut streams, content
in every shape, reasoning kept apart, usage in full, output caps for reasoning models,
deadlines, errors and retries as the official SDKs treat them, per-request options, and the
model catalogue the providers themselves report."""

import json
import time

import pytest

from tests.fake_provider import (
    LISTED,
    anthropic_stream,
    chat_body,
    chunk,
    gemini_stream,
    ollama_stream,
    openai_stream,
    sent,
    sse,
)
from tests.helpers import (
    ask,
    assert_envelope,
    messages,
    read_events,
    stream,
    token_counts,
)


@pytest.fixture
def app(provider_app):
    return provider_app


@pytest.fixture
def user(auth):
    return auth.register()


def events_of(response):
    return read_events(response.get_data(as_text=True))


def kinds(events):
    return [kind for kind, _ in events if kind != "comment"]


def then_context_excludes(client, user, fake, model, number, failed_question):
    """The next turn of the session does not carry the failed one."""
    fake.reply()
    assert ask(client, user, "next one", model=model, session_id=number).status_code == 200
    carried = json.dumps(sent(fake))
    assert failed_question not in carried


# --- 1. empty replies never poison a session -----------------------------------------------


def test_an_openai_refusal_is_the_reply_flagged_content_filter(client, user, fake):
    fake.reply(body=chat_body(content=None, refusal="I can't help with that."))
    reply = ask(client, user, "bad idea", model="openai").json
    assert (reply["content"], reply["finish_reason"]) == (
        "I can't help with that.",
        "content_filter",
    )
    assert reply["failed"] is False


def test_a_streamed_openai_refusal_is_the_reply_flagged_content_filter(client, user, fake):
    fake.reply(
        chunks=[
            chunk({"role": "assistant", "content": None}),
            chunk({"refusal": "I can't "}),
            chunk({"refusal": "help."}),
            chunk(finish="stop"),
            sse("[DONE]"),
        ]
    )
    events = events_of(stream(client, user, "openai"))
    assert kinds(events) == ["start", "delta", "delta", "done"]
    assert events[-1][1]["content"] == "I can't help."
    assert events[-1][1]["finish_reason"] == "content_filter"


def test_a_reasoning_model_that_only_thought_fails_and_leaves_the_context(client, user, fake, app):
    body = chat_body("deepseek-reasoner", content="", reasoning_content="Hmm... " * 50)
    body["choices"][0]["finish_reason"] = "length"
    fake.reply(body=body)
    failed = assert_envelope(
        ask(client, user, "think hard", model="deepseek/deepseek-reasoner", session_id=3), 502
    )
    assert "no usable reply" in failed["message"] and "reasoning" in failed["message"]
    [question] = messages(app)
    assert (question.content, question.error) == ("think hard", failed["message"])
    then_context_excludes(client, user, fake, "deepseek/deepseek-reasoner", 3, "think hard")


@pytest.mark.parametrize(
    ("model", "chunks"),
    [
        (
            "anthropic",
            [
                sse(
                    {
                        "type": "message_start",
                        "message": {"model": "c", "usage": {"input_tokens": 3}},
                    },
                    "message_start",
                ),
                sse(
                    {
                        "type": "content_block_delta",
                        "delta": {"type": "thinking_delta", "thinking": "only thoughts"},
                    },
                    "content_block_delta",
                ),
                sse(
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "max_tokens"},
                        "usage": {"output_tokens": 9},
                    },
                    "message_delta",
                ),
                sse({"type": "message_stop"}, "message_stop"),
            ],
        ),
        (
            "gemini",
            [
                sse(
                    {
                        "candidates": [
                            {"content": {"parts": [{"text": "thinking", "thought": True}]}}
                        ]
                    }
                ),
                sse({"candidates": [{"finishReason": "SAFETY", "index": 0}]}),
            ],
        ),
    ],
)
def test_a_stream_with_no_text_flags_the_question_and_leaves_the_context(
    client, user, fake, app, model, chunks
):
    fake.reply(chunks=chunks)
    events = events_of(stream(client, user, model, "say nothing", session_id=4))
    assert kinds(events)[0] == "start" and kinds(events)[-1] == "error"
    assert "no usable reply" in events[-1][1]["message"]
    [question] = messages(app)
    assert question.error == events[-1][1]["message"] and not question.is_bot
    then_context_excludes(client, user, fake, model, 4, "say nothing")


def test_a_gemini_prompt_blocked_by_safety_is_a_flagged_failure(client, user, fake, app):
    fake.reply(
        body={"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": "gemini-2.5-flash"}
    )
    body = assert_envelope(ask(client, user, "blocked", model="gemini"), 502, "blocked (SAFETY)")
    assert messages(app)[-1].error == body["message"]


# --- 2. a cut stream is never stored as complete --------------------------------------------


@pytest.mark.parametrize(
    ("model", "chunks"),
    [
        ("gemini", gemini_stream(["cut ", "short"], "gemini-2.5-flash")[:1]),  # no finishReason
        ("openai", openai_stream(["cut ", "short"], "m")[:-1]),  # finish_reason, but no [DONE]
        ("anthropic", anthropic_stream(["cut ", "short"], "c")[:-1]),  # no message_stop
        ("ollama", ollama_stream(["cut ", "short"], "l")[:-1]),  # no "done": true
    ],
)
def test_a_stream_without_its_end_marker_is_incomplete(client, user, fake, app, model, chunks):
    fake.reply(chunks=chunks)
    events = events_of(stream(client, user, model))
    assert kinds(events)[-1] == "error"
    assert "before the reply was complete" in events[-1][1]["message"]
    reply = messages(app)[-1]
    assert reply.is_bot and reply.incomplete and reply.content.startswith("cut")


def test_gemini_aborting_a_stream_with_bare_json_says_why(client, user, fake, app):
    overloaded = (
        b'{\n  "error": {\n    "code": 503,\n    "message": "This model is currently experiencing '
        b'high demand.",\n    "status": "UNAVAILABLE"\n  }\n}\n'
    )
    fake.reply(chunks=gemini_stream(["Once ", "upon"], "gemini-2.5-flash")[:1] + [overloaded])
    events = events_of(stream(client, user, "gemini"))
    assert kinds(events) == ["start", "delta", "error"]
    assert "experiencing high demand" in events[-1][1]["message"]
    assert messages(app)[-1].incomplete


# --- 3. content in the shapes providers really send -----------------------------------------

MAGISTRAL = [
    {"type": "thinking", "thinking": [{"type": "text", "text": "Check 7×13."}]},
    {"type": "text", "text": "91 = 7 × 13."},
]


def test_magistral_content_chunks_give_text_and_reasoning(client, user, fake):
    fake.reply(body=chat_body("magistral-medium-2509", content=MAGISTRAL))
    reply = ask(client, user, "factor 91", model="mistral/magistral-medium-2509").json
    assert (reply["content"], reply["reasoning"]) == ("91 = 7 × 13.", "Check 7×13.")


def test_streamed_magistral_content_chunks_give_text_and_reasoning(client, user, fake):
    fake.reply(
        chunks=[
            chunk({"role": "assistant", "content": [MAGISTRAL[0]]}),
            chunk({"content": [{"type": "text", "text": "91 = "}]}),
            chunk({"content": "7 × 13."}),
            chunk(finish="stop"),
            sse("[DONE]"),
        ]
    )
    events = events_of(stream(client, user, "mistral/magistral-medium-2509"))
    assert kinds(events) == ["start", "reasoning", "delta", "delta", "done"]
    assert events[1][1] == {"content": "Check 7×13."}
    assert (events[-1][1]["content"], events[-1][1]["reasoning"]) == ("91 = 7 × 13.", "Check 7×13.")


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (
            {"id": "gen-1", "error": {"message": "Upstream error: overloaded", "code": 502}},
            502,
            "Upstream error: overloaded",
        ),
        (
            {"error": {"message": "Rate limit exceeded: free-models-per-day", "code": 429}},
            429,
            "free-models-per-day",
        ),
    ],
)
def test_openrouter_errors_in_200_bodies_are_named(client, user, fake, app, body, status, says):
    fake.reply(body=body, times=3)
    assert_envelope(ask(client, user, "hi", model="openrouter"), status, says)
    assert messages(app)[-1].error is not None


def test_openrouter_finish_reason_error_mid_stream_is_an_error_event(client, user, fake):
    fake.reply(
        chunks=[
            chunk({"role": "assistant", "content": "par"}),
            chunk(
                {"content": ""},
                "error",
                error={"code": "server_error", "message": "Provider disconnected unexpectedly"},
            ),
        ]
    )
    events = events_of(stream(client, user, "openrouter"))
    assert kinds(events) == ["start", "delta", "error"]
    assert "Provider disconnected unexpectedly" in events[-1][1]["message"]


# --- 4. reasoning is kept, apart from the answer --------------------------------------------


@pytest.mark.parametrize(
    ("model", "body", "reasoning"),
    [
        (
            "deepseek/deepseek-reasoner",
            chat_body("r", content="9.8", reasoning_content="9.11 < 9.8"),
            "9.11 < 9.8",
        ),
        (
            "openrouter",
            chat_body("o", content="9.8", reasoning="compare decimals"),
            "compare decimals",
        ),
        (
            "groq/qwen/qwen3-32b",
            chat_body("q", content="9.8", reasoning="parsed thoughts"),
            "parsed thoughts",
        ),
    ],
)
def test_reasoning_fields_are_kept_apart_and_never_sent_back(
    client, user, fake, model, body, reasoning
):
    fake.reply(body=body)
    reply = ask(client, user, "which is bigger", model=model, session_id=6).json
    assert (reply["content"], reply["reasoning"]) == ("9.8", reasoning)
    fake.reply()
    ask(client, user, "and why", model=model, session_id=6)
    history = sent(fake)["messages"]
    assert {"role": "assistant", "content": "9.8"} in history
    assert reasoning not in json.dumps(history)


def test_groq_reasoning_models_are_asked_for_parsed_reasoning(client, user, fake):
    ask(client, user, "hi", model="groq/qwen/qwen3-32b")
    assert sent(fake)["reasoning_format"] == "parsed"
    ask(client, user, "hi", model="groq/openai/gpt-oss-20b", reasoning_effort="high")
    assert sent(fake)["include_reasoning"] is True and sent(fake)["reasoning_effort"] == "high"
    ask(client, user, "hi", model="groq")  # llama: not a reasoning model
    assert "reasoning_format" not in sent(fake) and "include_reasoning" not in sent(fake)


def test_gemini_thoughts_are_asked_for_kept_and_counted(client, user, fake):
    fake.reply(
        body={
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "**Weighing it**", "thought": True},
                            {"text": "42."},
                        ],
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 10,
                "candidatesTokenCount": 8,
                "thoughtsTokenCount": 230,
                "cachedContentTokenCount": 4,
            },
            "modelVersion": "gemini-2.5-flash",
        }
    )
    reply = ask(client, user, "meaning", model="gemini").json
    assert sent(fake)["generationConfig"]["thinkingConfig"] == {"includeThoughts": True}
    assert (reply["content"], reply["reasoning"]) == ("42.", "**Weighing it**")
    assert token_counts(reply["usage"]) == {
        "prompt_tokens": 10,
        "completion_tokens": 238,  # thoughts are billed as output
        "reasoning_tokens": 230,
        "cached_tokens": 4,
    }


def test_streamed_reasoning_comes_as_reasoning_events(client, user, fake):
    fake.reply(
        chunks=[
            chunk({"role": "assistant", "content": None, "reasoning_content": "Let me "}),
            chunk({"reasoning_content": "see."}),
            chunk({"content": "Yes."}),
            chunk(finish="stop"),
            sse("[DONE]"),
        ]
    )
    events = events_of(stream(client, user, "deepseek/deepseek-reasoner"))
    assert kinds(events) == ["start", "reasoning", "reasoning", "delta", "done"]
    assert events[-1][1]["reasoning"] == "Let me see."


def test_anthropic_thinks_when_an_effort_is_asked_and_its_thinking_is_kept(client, user, fake):
    fake.reply(
        body={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [
                {"type": "thinking", "thinking": "Let me analyze.", "signature": "sig"},
                {"type": "text", "text": "Done."},
            ],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 20, "output_tokens": 50, "cache_read_input_tokens": 100},
        }
    )
    reply = ask(
        client, user, "hard", model="anthropic", reasoning_effort="medium", temperature=0.3
    ).json
    body = sent(fake)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert body["max_tokens"] == 32768 and "temperature" not in body  # thinking takes none
    assert (reply["content"], reply["reasoning"]) == ("Done.", "Let me analyze.")
    assert reply["usage"]["prompt_tokens"] == 120 and reply["usage"]["cached_tokens"] == 100
    assert reply["options"] == {"reasoning_effort": "medium"}


def test_anthropic_streamed_thinking(client, user, fake):
    fake.reply(
        chunks=[
            sse(
                {"type": "message_start", "message": {"model": "c", "usage": {"input_tokens": 3}}},
                "message_start",
            ),
            sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                },
                "content_block_start",
            ),
            sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": "Simple."},
                },
                "content_block_delta",
            ),
            sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "signature_delta", "signature": "c3ln"},
                },
                "content_block_delta",
            ),
            sse(
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "text_delta", "text": "Hi"},
                },
                "content_block_delta",
            ),
            sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 9},
                },
                "message_delta",
            ),
            sse({"type": "message_stop"}, "message_stop"),
        ]
    )
    events = events_of(stream(client, user, "anthropic", reasoning_effort="low"))
    assert kinds(events) == ["start", "reasoning", "delta", "done"]
    assert events[-1][1]["reasoning"] == "Simple." and events[-1][1]["content"] == "Hi"


def test_ollama_thinking_is_kept(client, user, fake):
    line = {"model": "qwen3", "created_at": "t", "done": False}
    fake.reply(
        chunks=[
            (
                json.dumps(
                    line | {"message": {"role": "assistant", "content": "", "thinking": "Count."}}
                )
                + "\n"
            ).encode(),
            (json.dumps(line | {"message": {"role": "assistant", "content": "3"}}) + "\n").encode(),
            ollama_stream([], "qwen3")[-1],
        ]
    )
    events = events_of(stream(client, user, "ollama/qwen3", reasoning_effort="high"))
    assert sent(fake)["think"] == "high"
    assert kinds(events) == ["start", "reasoning", "delta", "done"]
    assert events[-1][1]["reasoning"] == "Count."


# --- 5. usage in full -------------------------------------------------------------------------


def test_openai_usage_details_are_reported(client, user, fake):
    body = chat_body("o3", content="ok")
    body["usage"] |= {
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 5},
    }
    fake.reply(body=body)
    reply = ask(client, user, "hi", model="openai/o3").json
    assert token_counts(reply["usage"]) == {
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "reasoning_tokens": 5,
        "cached_tokens": 64,
    }


# --- 6. reasoning models get room to think ---------------------------------------------------


@pytest.mark.parametrize(
    ("model", "field", "cap"),
    [
        ("openai", "max_completion_tokens", 4096),
        ("openai/o3", "max_completion_tokens", 32768),
        ("openai/gpt-5-mini", "max_completion_tokens", 32768),
        ("deepseek/deepseek-reasoner", "max_tokens", 32768),
        ("mistral/magistral-small-2509", "max_tokens", 32768),
    ],
)
def test_reasoning_models_get_the_larger_output_cap(client, user, fake, model, field, cap):
    assert ask(client, user, "hi", model=model).status_code == 200
    assert sent(fake)[field] == cap


def test_gemini_reasoning_cap_and_configured_reasoning_models(
    make_app, provider_config, auth, fake
):
    client = make_app(
        provider_config
        | {"REASONING_MODELS": ["openai-compatible/*-thinker"], "REASONING_MAX_OUTPUT_TOKENS": 9000}
    ).test_client()
    user = auth.register(client=client)
    ask(client, user, "hi", model="gemini")
    assert sent(fake)["generationConfig"]["maxOutputTokens"] == 9000
    ask(client, user, "hi", model="openai-compatible/deep-thinker")
    assert sent(fake)["max_tokens"] == 9000
    ask(client, user, "hi", model="openai-compatible/plain")
    assert sent(fake)["max_tokens"] == 4096


# --- 7. deadlines ---------------------------------------------------------------------------


def test_a_provider_trickling_keep_alives_is_cut_at_the_deadline(
    make_app, provider_config, auth, fake
):
    client = make_app(provider_config | {"PROVIDER_TIMEOUT": 1.0}).test_client()
    user = auth.register(client=client)
    fake.reply(chunks=[b"\n"] * 40, gap=0.1)  # DeepSeek's keep-alive newlines, for 4 s
    started = time.monotonic()
    body = assert_envelope(
        ask(client, user, "slow", model="deepseek"), 504, "did not answer in time"
    )
    assert time.monotonic() - started < 3
    assert body["message"]


def test_a_stream_silent_for_its_idle_timeout_ends_flagged(make_app, provider_config, auth, fake):
    app = make_app(provider_config | {"STREAM_IDLE_TIMEOUT": 0.3})
    client = app.test_client()
    user = auth.register(client=client)
    rest = openai_stream(["late"], "m")[1:]
    fake.reply(chunks=[chunk({"role": "assistant", "content": "early "})] + rest, gap=1.0)
    events = events_of(stream(client, user, "openai"))
    assert kinds(events)[-1] == "error" and "silent" in events[-1][1]["message"]
    assert messages(app)[-1].incomplete


def test_a_stream_longer_than_allowed_is_ended(make_app, provider_config, auth, fake):
    app = make_app(provider_config | {"STREAM_MAX_SECONDS": 0.3})
    client = app.test_client()
    user = auth.register(client=client)
    fake.reply(chunks=openai_stream([f"p{n} " for n in range(10)], "m"), gap=0.1)
    events = events_of(stream(client, user, "openai"))
    assert kinds(events)[-1] == "error" and "longer than allowed" in events[-1][1]["message"]
    assert events[-1][1]["code"] == 504


def test_a_stream_with_no_first_byte_in_time_is_retried(make_app, provider_config, auth, fake):
    client = make_app(provider_config | {"STREAM_IDLE_TIMEOUT": 0.3}).test_client()
    user = auth.register(client=client)
    fake.reply(delay=1.0)  # headers only after a second, once
    events = events_of(stream(client, user, "openai"))
    assert kinds(events)[-1] == "done"
    assert len(fake.requests) == 2


# --- 8. errors and retries, as the official SDKs behave --------------------------------------


def test_a_rejected_key_keeps_the_providers_words(client, user, fake):
    fake.reply(
        401,
        {"error": {"message": "Incorrect API key provided: sk-...abcd", "code": "invalid_api_key"}},
    )
    body = assert_envelope(
        ask(client, user, "hi", model="openai"), 502, "rejected the configured credentials"
    )
    assert "Incorrect API key provided" in body["message"]


def test_openrouter_403_is_moderation_not_a_bad_key(client, user, fake):
    fake.reply(
        403,
        {
            "error": {
                "code": 403,
                "message": "Your input was flagged",
                "metadata": {"reasons": ["violence"]},
            }
        },
    )
    body = assert_envelope(
        ask(client, user, "hi", model="openrouter"), 502, "refused the input (moderation)"
    )
    assert "Your input was flagged" in body["message"] and "credentials" not in body["message"]


def test_mistral_errors_are_read_in_their_shapes(client, user, fake):
    fake.reply(
        422,
        {
            "object": "error",
            "message": {
                "detail": [
                    {
                        "type": "extra_forbidden",
                        "loc": ["body", "foo"],
                        "msg": "Extra inputs are not permitted",
                    }
                ]
            },
            "type": "invalid_request_error",
        },
    )
    body = assert_envelope(ask(client, user, "hi", model="mistral"), 502, "HTTP 422")
    assert "foo: Extra inputs are not permitted" in body["message"]
    fake.reply(
        400,
        {
            "object": "error",
            "message": "Invalid model: mistral-9",
            "type": "invalid_model",
            "code": "1500",
        },
    )
    body = assert_envelope(
        ask(client, user, "hi", model="mistral/mistral-9"), 422, "'mistral-9' was not found"
    )


@pytest.mark.parametrize(("status", "header", "attempts"), [(500, "false", 1), (400, "true", 2)])
def test_x_should_retry_is_obeyed(client, user, fake, status, header, attempts):
    fake.reply(status, {"error": {"message": "m"}}, {"x-should-retry": header})
    ask(client, user, "hi", model="openai")
    assert len(fake.requests) == attempts


@pytest.mark.parametrize(
    ("model", "status", "body"),
    [
        (
            "openai",
            429,
            {
                "error": {
                    "message": "You exceeded your current quota",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            },
        ),
        (
            "deepseek",
            402,
            {
                "error": {
                    "message": "Insufficient Balance",
                    "type": "unknown_error",
                    "code": "invalid_request_error",
                }
            },
        ),
        (
            "anthropic",
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "Your credit balance is too low to access the Anthropic API.",
                },
            },
        ),
        (
            "gemini",
            429,
            {
                "error": {
                    "code": 429,
                    "message": "quota",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                            "violations": [
                                {"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}
                            ],
                        }
                    ],
                }
            },
        ),
    ],
)
def test_an_exhausted_quota_is_a_503_at_once(client, user, fake, app, model, status, body):
    fake.reply(status, body, times=3)
    failed = assert_envelope(ask(client, user, "hi", model=model), 503, "provider quota exhausted")
    assert len(fake.requests) == 1
    assert messages(app)[-1].error == failed["message"]


def test_a_retry_after_longer_than_we_wait_goes_to_the_client_at_once(client, user, fake):
    fake.reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "30"}, times=3)
    response = ask(client, user, "hi", model="groq")
    assert_envelope(response, 429, "rate limiting")
    assert response.headers["Retry-After"] == "30" and len(fake.requests) == 1


# --- 9. OpenRouter attribution ----------------------------------------------------------------


def test_openrouter_gets_its_attribution_headers(make_app, provider_config, auth, fake):
    settings = {
        "OPENROUTER_SITE_URL": "https://chat.example.com",
        "OPENROUTER_APP_NAME": "Team Chat",
    }
    client = make_app(provider_config | settings).test_client()
    ask(client, auth.register(client=client), "hi", model="openrouter")
    headers = fake.requests[-1].headers
    assert (headers["HTTP-Referer"], headers["X-Title"]) == (
        "https://chat.example.com",
        "Team Chat",
    )


# --- 10. per-request options -----------------------------------------------------------------

OPTIONS = {"temperature": 0.2, "top_p": 0.9, "max_tokens": 100, "stop": ["END"]}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "openai",
            {"temperature": 0.2, "top_p": 0.9, "max_completion_tokens": 100, "stop": ["END"]},
        ),
        ("groq", {"temperature": 0.2, "top_p": 0.9, "max_completion_tokens": 100, "stop": ["END"]}),
        ("mistral", {"temperature": 0.2, "top_p": 0.9, "max_tokens": 100, "stop": ["END"]}),
        (
            "anthropic",
            {"temperature": 0.2, "top_p": 0.9, "max_tokens": 100, "stop_sequences": ["END"]},
        ),
        (
            "ollama",
            {"options": {"temperature": 0.2, "top_p": 0.9, "num_predict": 100, "stop": ["END"]}},
        ),
    ],
)
def test_options_are_sent_in_each_providers_own_fields(client, user, fake, model, expected):
    reply = ask(client, user, "hi", model=model, **OPTIONS).json
    body = sent(fake)
    for name, value in expected.items():
        assert body[name] == value, (name, body)
    assert reply["options"] == OPTIONS


def test_gemini_options_go_in_generation_config(client, user, fake):
    reply = ask(client, user, "hi", model="gemini", **OPTIONS, reasoning_effort="low").json
    config = sent(fake)["generationConfig"]
    assert config == {
        "maxOutputTokens": 100,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END"],
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 2048},
    }
    assert reply["options"] == OPTIONS | {"reasoning_effort": "low"}


@pytest.mark.parametrize(
    ("model", "left_out"),
    [
        ("deepseek/deepseek-reasoner", {"temperature", "top_p", "reasoning_effort"}),
        ("openai/o3", {"temperature", "top_p", "stop"}),
        ("openai", {"reasoning_effort"}),  # gpt-4.1-mini does not reason
    ],
)
def test_options_a_model_rejects_are_left_out_and_not_recorded(client, user, fake, model, left_out):
    asked = OPTIONS | {"reasoning_effort": "high"}
    reply = ask(client, user, "hi", model=model, **asked).json
    assert not left_out & set(sent(fake)), sent(fake)
    assert reply["options"] == {k: v for k, v in asked.items() if k not in left_out}


def test_streamed_replies_record_their_options(client, user, fake):
    events = events_of(stream(client, user, "openai", temperature=0.5))
    assert sent(fake)["temperature"] == 0.5
    assert events[-1][1]["options"] == {"temperature": 0.5}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"temperature": 2.1}, "temperature"),
        ({"temperature": "0.5"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 4097}, "max_tokens"),  # over gpt-4.1-mini's cap
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": []}, "stop"),
        ({"stop": "END"}, "stop"),
        ({"reasoning_effort": "maximum"}, "reasoning_effort"),
    ],
)
def test_bad_options_are_a_422_naming_the_field(client, user, fake, app, options, field):
    body = assert_envelope(ask(client, user, "hi", model="openai", **options), 422)
    assert field in body["errors"]["json"]
    assert messages(app) == [] and fake.requests == []


# --- 11. the model catalogue from the providers --------------------------------------------


def test_the_catalogue_lists_what_each_provider_offers_and_caches_it(client, user, fake):
    models = client.get("/api/ai_chat/models", headers=user).json
    by_id = {m["id"]: m for m in models}
    for provider in ("openai", "groq", "anthropic", "gemini", "ollama", "mistral", "openrouter"):
        for listed in LISTED:
            assert by_id[f"{provider}/{listed}"]["available"] is True, provider
    assert "gemini/embedding-x" not in by_id  # it does not generate content
    assert by_id["openai/gpt-4.1-mini"]["default"] is True
    asked = len(fake.listings)
    client.get("/api/ai_chat/models", headers=user)
    assert len(fake.listings) == asked  # cached for MODEL_LIST_TTL


def test_an_unreachable_provider_shows_its_configured_models_unavailable(
    make_app, provider_config, auth, fake
):
    from tests.helpers import closed_port

    settings = provider_config | {
        "GROQ_BASE_URL": f"http://127.0.0.1:{closed_port()}/openai/v1",
        "OLLAMA_BASE_URL": f"http://127.0.0.1:{closed_port()}",
        "MODEL_LIST_TTL": 0,
    }
    client = make_app(settings).test_client()
    user = auth.register(client=client)
    fake.reply(404, {"error": {"message": "no /models here"}}, method="GET")  # openai's listing
    by_id = {m["id"]: m for m in client.get("/api/ai_chat/models", headers=user).json}
    groq = by_id["groq/llama-3.3-70b-versatile"]
    assert groq["available"] is False and "could not be reached" in groq["unavailable_reason"]
    assert by_id["ollama/llama3.2"]["available"] is False
    # A provider that answers its listing with an error keeps its configured models usable.
    assert by_id["openai/gpt-4.1-mini"] == {
        "id": "openai/gpt-4.1-mini",
        "provider": "openai",
        "model": "gpt-4.1-mini",
        "default": True,
        "available": True,
        "unavailable_reason": None,
    }


def test_a_provider_that_hangs_holds_the_catalogue_up_a_few_seconds_at_most(client, user, fake):
    fake.reply(delay=8, method="GET")
    started = time.monotonic()
    models = client.get("/api/ai_chat/models", headers=user).json
    assert time.monotonic() - started < 6
    assert any(m["unavailable_reason"] and "in time" in m["unavailable_reason"] for m in models)


def test_cli_lists_a_providers_models(runner, fake):
    result = runner.invoke(args=["providers", "models", "anthropic"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["MODEL", "AVAILABLE", "DEFAULT", "WHY", "NOT"]
    assert any(line.startswith("anthropic/listed-model-a") for line in lines)
