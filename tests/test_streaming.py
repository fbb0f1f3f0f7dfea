"""Streaming: parsers on byte streams cut anywhere, and every provider's stream through the API."""

import json
import logging
import os
import random
import signal
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from config import PROVIDER_NAMES
from polygenix.chat.turn import INTERRUPTED
from polygenix.extensions import db
from polygenix.logs import JSONFormatter
from polygenix.models import Message
from polygenix.providers import DEFINITIONS
from polygenix.providers.decoders import SSEDecoder
from tests.fake_provider import (
    CHUNKED,
    CLOSE,
    anthropic_stream,
    gemini_stream,
    ollama_stream,
    openai_stream,
    sse,
)
from tests.gunicorn_server import gunicorn, register_over_http, workers
from tests.helpers import assert_envelope, read_events, stream, token_counts, wait_for
from tests.provider_setup import DEFAULT_MODELS, SYSTEM

PIECES = ["Héllo", ", wörld", " — 日本語", " 🙂!"]
TEXT = "".join(PIECES)


# --- parsers, no HTTP ------------------------------------------------------------------------


def parse(wire, data: bytes, cuts: list[int]):
    """Feed `data` to the wire's decoder cut at `cuts`; return text, the merged fields, events."""
    decoder = wire.stream_decoder()
    events = []
    bounds = [0, *sorted(cuts), len(data)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        for record in decoder.feed(data[start:end]):
            events += wire.parse_stream_record(record)
    for record in decoder.close():
        events += wire.parse_stream_record(record)
    merged = {}
    for event in events:
        for name in ("prompt_tokens", "completion_tokens", "finish_reason", "model", "error"):
            if getattr(event, name) is not None:
                merged[name] = getattr(event, name)
    return "".join(e.text for e in events), merged, events


openai_chat, anthropic, gemini, ollama = (
    DEFINITIONS[name].wire for name in ("openai", "anthropic", "gemini", "ollama")
)
RECORDED = {
    "openai": (openai_chat, openai_stream(PIECES, "gpt-4.1-mini"), (11, 7)),
    "groq": (openai_chat, openai_stream(PIECES, "llama", groq=True), (11, 7)),
    "openrouter": (openai_chat, openai_stream(PIECES, "x/y", openrouter=True), (11, 7)),
    "anthropic": (anthropic, anthropic_stream(PIECES, "claude-haiku-4-5"), (12, 8)),
    "gemini": (gemini, gemini_stream(PIECES, "gemini-2.5-flash"), (13, 9)),
    "ollama": (ollama, ollama_stream(PIECES, "llama3.2"), (14, 10)),
}


def cuttings(data: bytes):
    """Whole, every single byte apart (every UTF-8 character split), and random cuts."""
    yield []
    yield list(range(1, len(data)))
    rng = random.Random(1234)
    for _ in range(30):
        yield rng.sample(range(1, len(data)), rng.randint(1, min(40, len(data) - 1)))


@pytest.mark.parametrize("name", RECORDED)
def test_stream_parsers_survive_any_cutting(name):
    wire, chunks, (prompt, completion) = RECORDED[name]
    data = b"".join(chunks)
    for cuts in cuttings(data):
        text, merged, events = parse(wire, data, cuts)
        assert text == TEXT, cuts
        assert merged["prompt_tokens"] == prompt and merged["completion_tokens"] == completion
        assert merged["finish_reason"] == "stop"
        assert "error" not in merged
    done = [e for e in events if e.done]
    assert len(done) == 1  # Gemini's end marker is the chunk with a finishReason


def test_sse_decoder_details():
    decoder = SSEDecoder()
    records = decoder.feed(
        b": comment\r\nevent: one\r\ndata: first\r\ndata: second\r\n\r\n"
        b'data: {"a": 1}\n\n: keep-alive\n\ndata: tail'
    )
    assert [(r.event, r.data) for r in records] == [("one", "first\nsecond"), (None, '{"a": 1}')]
    assert [(r.event, r.data) for r in decoder.close()] == [(None, "tail")]


@pytest.mark.parametrize(
    ("wire", "data", "message"),
    [
        (
            openai_chat,
            sse({"choices": [{"delta": {"content": "par"}}]})
            + sse({"error": {"message": "upstream overloaded", "type": "server_error"}}),
            "upstream overloaded",
        ),
        (
            anthropic,
            sse(
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                "error",
            ),
            "Overloaded",
        ),
        (
            ollama,
            b'{"message": {"content": "par"}, "done": false}\n{"error": "out of memory"}\n',
            "out of memory",
        ),
        (gemini, sse({"error": {"code": 500, "message": "internal"}}), "internal"),
    ],
)
def test_stream_parsers_report_provider_errors(wire, data, message):
    _, merged, _ = parse(wire, data, [])
    assert merged["error"] == message


# --- through the API -------------------------------------------------------------------------


@pytest.fixture
def app(provider_app):
    """Every test through the API streams from the fake provider."""
    return provider_app


USAGE = {"anthropic": (12, 8), "gemini": (13, 9), "ollama": (14, 10)}


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_each_provider_streams_through_the_api(client, ada, fake, name):
    response = stream(client, ada, name)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Accel-Buffering"] == "no"
    events = read_events(response.get_data(as_text=True))
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"delta"}
    model = DEFAULT_MODELS[name]
    start = events[0][1]
    assert start["session_id"] == 1 and start["model"] == f"{name}/{model}"
    assert isinstance(start["user_message_id"], int)
    text = "".join(data["content"] for kind, data in events if kind == "delta")
    assert text == "Hello from the stream"
    done = events[-1][1]
    assert done["content"] == text and done["is_bot"] is True and done["incomplete"] is False
    prompt, completion = USAGE.get(name, (11, 7))
    assert token_counts(done["usage"]) == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "reasoning_tokens": None,
        "cached_tokens": None,
    }
    assert done["finish_reason"] == "stop"
    # The same reply, stored, as history shows it.
    history = client.get("/api/ai_chat/1", headers=ada).json["messages"]
    assert history[-1] | {"timestamp": None} == done | {"timestamp": None}

    sent = fake.requests[-1]
    if name == "gemini":
        assert sent.path.endswith(f"/models/{model}:streamGenerateContent?alt=sse")
        assert sent.body["systemInstruction"] == {"parts": [{"text": SYSTEM}]}
    elif name == "anthropic":
        assert sent.body["stream"] is True and sent.body["system"] == SYSTEM
    elif name == "ollama":
        assert sent.body["stream"] is True
    else:
        assert sent.body["stream"] is True
        if name == "mistral":
            assert "stream_options" not in sent.body
        else:
            assert sent.body["stream_options"] == {"include_usage": True}


def test_a_completed_stream_leaves_the_provider_connection_for_reuse(client, ada, fake):
    for _ in range(3):
        events = read_events(stream(client, ada, "openai").get_data(as_text=True))
        assert events[-1][0] == "done"
    ports = {request.client_port for request in fake.requests[-3:]}
    assert len(ports) == 1  # one TCP connection served all three streams


def test_a_streamed_replys_latency_counts_from_opening_the_provider(client, ada, fake, app):
    # The provider's stream is opened before the user's message is stored: the wait for the
    # provider's first byte belongs to its latency.
    fake.reply(delay=0.2)
    events = read_events(stream(client, ada, "openai").get_data(as_text=True))
    assert events[-1][0] == "done"
    with app.app_context():
        reply = db.session.scalar(select(Message).where(Message.is_bot))
    assert reply.latency_ms >= 200


@pytest.mark.parametrize("streamed", [True, False])
def test_no_database_connection_is_held_while_the_provider_thinks(client, ada, fake, app, streamed):
    fake.reply(delay=0.5)  # half a second before the provider starts answering
    body = {"content": "Hi", "model": "openai", "stream": streamed}
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            lambda: client.post("/api/ai_chat/request", headers=ada, json=body).get_data(True)
        )
        wait_for(lambda: fake.requests, what="the provider call")
        assert fake.requests, "the provider was not called"
        with app.app_context():
            assert db.engine.pool.checkedout() == 0
        answer = pending.result()
    assert read_events(answer)[-1][0] == "done" if streamed else json.loads(answer)["is_bot"]


def test_accept_header_asks_for_a_stream(client, ada):
    response = client.post(
        "/api/ai_chat/request",
        headers=ada | {"Accept": "text/event-stream"},
        json={"content": "hi there you", "model": "echo"},
    )
    assert response.mimetype == "text/event-stream"
    events = read_events(response.get_data(as_text=True))
    deltas = [data["content"] for kind, data in events if kind == "delta"]
    assert len(deltas) == 3 and "".join(deltas) == "Echo: hi there you"  # echo: a few chunks
    assert events[-1][0] == "done"


@pytest.mark.parametrize(
    ("model", "setup", "status"),
    [
        ("gpt-17", None, 422),
        (
            "groq",
            {
                "status": 429,
                "body": {"error": {"message": "slow"}},
                "headers": {"Retry-After": "9"},
                "times": 3,
            },
            429,
        ),
        ("anthropic", {"status": 401, "body": {"error": {"message": "bad key"}}}, 502),
    ],
)
def test_failures_before_the_first_byte_are_plain_json(client, ada, fake, model, setup, status):
    if setup:
        fake.reply(**setup)
    response = stream(client, ada, model)
    assert response.mimetype == "application/json"
    assert_envelope(response, status)
    assert_envelope(
        client.post("/api/ai_chat/request", json={"content": "x", "model": "echo", "stream": True}),
        401,
    )


def test_provider_error_mid_stream(client, ada, fake, app):
    fake.reply(
        chunks=[
            sse({"choices": [{"delta": {"content": "Half an "}}]}),
            sse({"choices": [{"delta": {"content": "answer"}}]}),
            sse({"error": {"message": "upstream overloaded, key sk-abcdefgh12345678"}}),
        ]
    )
    events = read_events(stream(client, ada, "openai", session_id=4).get_data(as_text=True))
    assert [kind for kind, _ in events] == ["start", "delta", "delta", "error"]
    error = events[-1][1]
    assert error["code"] == 502 and error["detail"] == error["message"]
    assert "upstream overloaded" in error["message"] and "sk-abcdefgh" not in error["message"]

    messages = client.get("/api/ai_chat/4", headers=ada).json["messages"]
    assert messages[-1]["content"] == "Half an answer"
    assert messages[-1]["incomplete"] is True and "overloaded" in messages[-1]["error"]
    # That turn stays out of the next one's context.
    stream(client, ada, "openai", "And now?", session_id=4)
    assert [m["content"] for m in fake.requests[-1].body["messages"]] == [SYSTEM, "And now?"]


@pytest.mark.parametrize("framing", [CHUNKED, CLOSE])
@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_each_delta_is_relayed_before_the_provider_finishes(client, ada, fake, name, framing):
    """Chunked, or ended by closing the connection (no length, no chunks): every wire format's
    pieces are passed on as they arrive, the first while the provider still holds its last back."""
    pause = threading.Event()
    sent = fake.reply(framing=framing, pause=pause)
    body = {"content": "Stream it", "model": name, "stream": True}
    response = client.post("/api/ai_chat/request", headers=ada, json=body, buffered=False)
    chunks = iter(response.response)
    received = b""
    while b"event: delta" not in received:
        received += next(chunks)
    assert not sent.finished.is_set(), "the delta came only once the provider had finished"
    pause.set()
    received += b"".join(chunks)
    events = read_events(received.decode())
    assert events[-1][0] == "done" and events[-1][1]["content"] == "Hello from the stream"


@pytest.mark.parametrize("framing", [CHUNKED, CLOSE])
def test_v1_relays_each_chunk_before_the_provider_finishes(client, ada, fake, framing):
    pause = threading.Event()
    sent = fake.reply(framing=framing, pause=pause)
    body = {"model": "anthropic", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    response = client.post("/v1/chat/completions", headers=ada, json=body, buffered=False)
    chunks = iter(response.response)
    received = b""
    while b'"content":"Hello"' not in received.replace(b" ", b""):
        received += next(chunks)
    assert not sent.finished.is_set(), "the chunk came only once the provider had finished"
    pause.set()
    received += b"".join(chunks)
    assert received.rstrip().endswith(b"data: [DONE]")


@pytest.mark.parametrize("framing", [CHUNKED, CLOSE])
def test_stream_cut_short_is_an_error(client, ada, fake, framing):
    # No finish, no [DONE]: the body just ends (a last chunk, or the connection closed).
    fake.reply(chunks=openai_stream(["only ", "part"], "gpt-4.1-mini")[:3], framing=framing)
    events = read_events(stream(client, ada, "openai").get_data(as_text=True))
    assert events[-1][0] == "error"
    assert "before the reply was complete" in events[-1][1]["message"]


def test_a_stream_with_no_text_flags_the_question(client, ada, fake):
    fake.reply(chunks=[sse({"type": "error", "error": {"message": "Overloaded"}}, "error")])
    events = read_events(stream(client, ada, "anthropic", session_id=2).get_data(as_text=True))
    assert [kind for kind, _ in events] == ["start", "error"]
    [question] = client.get("/api/ai_chat/2", headers=ada).json["messages"]
    assert question["failed"] is True and "Overloaded" in question["error"]


def test_keep_alive_comments_while_the_provider_is_silent(client, ada, fake, app):
    app.config["STREAM_KEEPALIVE_SECONDS"] = 0.1
    fake.reply(chunks=openai_stream(["slow", " reply"], "gpt-4.1-mini"), gap=0.25)
    events = read_events(stream(client, ada, "openai").get_data(as_text=True))
    assert ("comment", "keep-alive") in events
    assert events[-1][0] == "done" and events[-1][1]["content"] == "slow reply"


def test_client_disconnect_stops_the_provider_and_keeps_the_partial_reply(client, ada, fake, app):
    fake.reply(chunks=openai_stream(["first ", "second ", "third"], "gpt-4.1-mini"), gap=0.3)
    response = client.post(
        "/api/ai_chat/request",
        headers=ada,
        json={"content": "Tell me", "model": "openai", "stream": True, "session_id": 8},
        buffered=False,
    )
    body = b""
    chunks = iter(response.response)
    while b'"content":"first "' not in body:
        body += next(chunks)
    response.close()  # the client goes away after the first delta

    assert fake.disconnected.wait(3), "the provider connection was not closed"
    with app.app_context():
        reply = db.session.scalars(select(Message).where(Message.is_bot)).one()
        assert (reply.content, reply.incomplete) == ("first ", True)
        assert "disconnected" in reply.error
    assert len(fake.requests) == 1


def test_client_leaving_right_after_the_start_event_stops_the_provider(
    client, ada, fake, app, caplog
):
    caplog.set_level(logging.INFO, "polygenix.request")
    fake.reply(chunks=openai_stream(["never ", "read"], "gpt-4.1-mini"), gap=0.5)
    response = client.post(
        "/api/ai_chat/request",
        headers=ada,
        json={"content": "Tell me", "model": "openai", "stream": True},
        buffered=False,
    )
    assert next(iter(response.response)).startswith(b"event: start")
    response.close()  # gone before the first delta

    assert fake.disconnected.wait(3), "the provider connection was not closed"
    with app.app_context():
        question = db.session.scalars(select(Message)).one()  # and no reply
        assert "disconnected" in question.error
    # The client's doing, not the provider's: counted as 499 (client closed request), not 502.
    [line] = [r for r in caplog.records if r.name == "polygenix.request"]
    assert json.loads(JSONFormatter().format(line))["outcome"] == "499"


def test_a_message_that_cannot_be_stored_hangs_up_on_the_provider(
    make_app, provider_config, auth, fake, tmp_path
):
    # The provider's stream is opened before the user's message is committed; when the commit
    # fails (here after SQLite's 5 s busy timeout), the answer is an ordinary error and the
    # provider is hung up on mid-stream. SQLite whatever database the suite runs on: another
    # connection can hold its write lock.
    database = tmp_path / "locked.db"
    app = make_app(
        provider_config
        | {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}",
            "PROVIDER_TIMEOUT": 30,
            # Counted in the database, the rate limit would meet the lock first.
            "RATELIMIT_ENABLED": False,
        }
    )
    client = app.test_client()
    ada = auth.register(client=client)
    fake.reply(chunks=openai_stream(["unread"] * 30, "gpt-4.1-mini"), gap=0.5)
    other_writer = sqlite3.connect(database, isolation_level=None)
    other_writer.execute("BEGIN IMMEDIATE")  # holds the write lock past the busy timeout
    try:
        response = stream(client, ada, "openai")
    finally:
        other_writer.execute("ROLLBACK")
        other_writer.close()
    assert_envelope(response, 503, "Database unavailable")
    assert len(fake.requests) == 1
    assert fake.disconnected.wait(3), "the provider connection was not closed"
    with app.app_context():
        assert db.session.scalar(select(func.count(Message.id))) == 0


def test_history_flags_incomplete_replies(client, ada, fake):
    fake.reply(chunks=openai_stream(["cut"], "m")[:2])
    stream(client, ada, "openai", session_id=3).get_data()
    history = client.get("/api/ai_chat/history", headers=ada).json
    question, reply = history[0]["messages"]
    assert (reply["content"], reply["incomplete"]) == ("cut", True)
    assert question["failed"] is False and question["incomplete"] is False


@pytest.mark.slow
def test_streams_through_gunicorn(tmp_path, fake):
    """Through real gunicorn workers: a whole stream, then one the client abandons."""
    fake.reset()
    settings = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fake.url + "/v1"}
    with gunicorn(tmp_path, settings) as (base, _):
        headers = register_over_http(base)
        body = {"content": "Stream it", "model": "openai", "session_id": 1, "stream": True}
        whole = requests.post(base + "/api/ai_chat/request", headers=headers, json=body, timeout=10)
        events = read_events(whole.text)
        assert [kind for kind, _ in events][-1] == "done"
        assert events[-1][1]["content"] == "Hello from the stream"

        pieces = [f"piece{n} " for n in range(20)]
        fake.reply(chunks=openai_stream(pieces, "gpt-4.1-mini"), gap=0.2)
        with requests.post(
            base + "/api/ai_chat/request",
            headers=headers,
            json=body | {"session_id": 2},
            stream=True,
            timeout=10,
        ) as abandoned:
            received = b""
            for chunk in abandoned.iter_content(chunk_size=None):
                received += chunk
                if b'"content":"piece0 "' in received:
                    break
        # The socket is closed; gunicorn notices within a write or two, and PolyGenix hangs up on
        # the provider and stores what it had received.
        assert fake.disconnected.wait(5), "the provider connection was not closed"

        def both_stored():
            session = requests.get(base + "/api/ai_chat/2", headers=headers, timeout=5)
            messages = session.json()["messages"]
            return messages if len(messages) == 2 else None

        messages = wait_for(both_stored, timeout=5, what="the partial reply", interval=0.1)
        partial = messages[1]["content"]
        assert messages[1]["incomplete"] is True
        assert partial.startswith("piece0 ") and len(partial) < len("".join(pieces))
        assert "".join(pieces).startswith(partial)


@pytest.mark.slow
@pytest.mark.parametrize("framing", [CHUNKED, CLOSE])
def test_a_worker_killed_mid_stream_leaves_its_text_and_a_flagged_reply(tmp_path, fake, framing):
    """kill -9 of the worker streaming a reply: the text saved so far stays, and once the
    stream's lease runs out the next request's sweep flags the reply incomplete; the same
    whether the provider frames its stream in chunks or ends it by closing the connection."""
    fake.reset()
    settings = {
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": fake.url + "/v1",
        "STREAM_KEEPALIVE_SECONDS": "0.5",
        "STREAM_SAVE_INTERVAL": "0.1",
    }
    with gunicorn(tmp_path, settings) as (base, _):
        headers = register_over_http(base)
        pieces = [f"piece{n} " for n in range(40)]
        pause = threading.Event()  # the provider holds its last chunk back until the kill
        sent = fake.reply(
            chunks=openai_stream(pieces, "gpt-4.1-mini"), gap=0.1, framing=framing, pause=pause
        )
        body = {"content": "Stream it", "model": "openai", "session_id": 7, "stream": True}
        received = b""
        with requests.post(
            base + "/api/ai_chat/request", headers=headers, json=body, stream=True, timeout=20
        ) as doomed:
            for chunk in doomed.iter_content(chunk_size=None):
                received += chunk
                if b'"content":"piece5 "' in received:
                    provider_finished = sent.finished.is_set()
                    for pid in workers(base):
                        os.kill(pid, signal.SIGKILL)
                    break
        pause.set()
        assert not provider_finished, "the text reached the client only at the provider's end"

        def both_stored():
            try:
                session = requests.get(base + "/api/ai_chat/7", headers=headers, timeout=5)
                messages = session.json()["messages"] if session.status_code == 200 else []
            except requests.RequestException:
                messages = []  # the workers are being restarted
            return messages if len(messages) == 2 else None

        # Real time, not a FakeClock: the lease runs out on the gunicorn workers' own clock.
        messages = wait_for(both_stored, timeout=20, what="the flagged reply", interval=0.2)
    question, reply = messages
    assert (question["content"], question["failed"]) == ("Stream it", False)
    assert reply["incomplete"] is True and reply["error"] == INTERRUPTED
    # What was saved before the kill: some of the text the client had seen (saves come at most
    # every STREAM_SAVE_INTERVAL, so the last pieces may not have been).
    seen = "".join(
        data["content"]
        for kind, data in read_events(received.decode().rsplit("\n\n", 1)[0])
        if kind == "delta"
    )
    assert reply["content"].startswith("piece0 ") and seen.startswith(reply["content"])
