"""The data tier under load: constant SQL per chat turn, many writers through real gunicorn
workers, and a database that goes away and comes back."""

import threading
import time

import pytest
import requests
from sqlalchemy import select

from polygenix.extensions import db
from polygenix.models import ChatSession, Message, User
from polygenix.serving import settings as settings_of_serve
from polygenix.user.service import create_user
from tests import helpers
from tests.fake_provider import FakeProvider
from tests.gunicorn_server import gunicorn, register_over_http
from tests.helpers import (
    PASSWORD,
    TEST_DATABASE_URL,
    ask,
    counted_statements,
    counted_transactions,
    usage_rows,
    warm_up,
)
from tests.tcp_proxy import PASS, RESET


def seed_session(app, email, number, turns):
    """A user's session with `turns` question/answer pairs, written straight to the database."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        session = ChatSession(user_id=user.id, number=number, title="seeded")
        db.session.add(session)
        db.session.flush()
        for n in range(turns):
            db.session.add(Message(session_id=session.id, is_bot=False, content=f"q{n}"))
            db.session.add(Message(session_id=session.id, is_bot=True, content=f"a{n}"))
        db.session.commit()


def test_a_chat_turn_runs_the_same_statements_whatever_the_session_length(app, client, auth):
    headers = auth.register("ada@example.com")
    seed_session(app, "ada@example.com", 1, turns=1)
    seed_session(app, "ada@example.com", 2, turns=400)
    warm_up(client, headers)
    counts = []
    for number in (1, 2):
        with counted_statements(app) as statements:
            response = ask(client, headers, "next", session_id=number)
        assert response.status_code == 200
        counts.append(len(statements))
    assert counts[0] == counts[1]
    # The user and its token check, the rate limit, the user's limits, session, context; then
    # one transaction: the session's change time, the two messages and the usage row.
    assert counts[0] <= 9


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL's data-modifying WITH")
def test_a_new_session_is_stored_by_one_statement_on_postgresql(app, client, auth):
    """The user's counter, the session, both messages and the usage in one statement before the
    commit: the user's row stays locked for that statement alone."""
    headers = auth.register("ada@example.com")
    warm_up(client, headers)
    with counted_transactions(app) as transactions:
        response = ask(client, headers, "a new chat")
    assert response.status_code == 200
    [store] = [t for t in transactions if any("SET last_session_number" in s for s in t)]
    assert len(store) == 1 and store[0].startswith("WITH")
    for marker in ("UPDATE users", "INSERT INTO chat_sessions", "INSERT INTO usage_daily"):
        assert marker in store[0]
    assert store[0].count("INSERT INTO messages") == 2
    session = client.get(f"/api/ai_chat/{response.json['session_id']}", headers=headers).json
    assert [(m["is_bot"], m["content"]) for m in session["messages"]] == [
        (False, "a new chat"),
        (True, "Echo: a new chat"),
    ]
    assert session["title"] == "a new chat"


def test_a_stream_end_counts_its_usage_by_a_transaction_of_that_statement_alone(app, client, auth):
    """The usage row is the one row all of a user's streams write as they end: each adds to it
    in a transaction of that statement alone (with a budget, the reservation's release too),
    then stores its reply in another, so that a burst of streams ending at once queues on that
    row for one statement each (600 of them: below). The usage counts once."""
    headers = auth.register("ada@example.com")
    first = ask(client, headers, "hello")
    warm_up(client, headers)
    with counted_transactions(app) as transactions:
        response = helpers.stream(
            client, headers, "echo", "again", session_id=first.json["session_id"]
        )
        assert b"event: done" in response.get_data()
    [usage] = [t for t in transactions if any("usage_daily" in s for s in t)]
    assert len(usage) == 1 and usage[0].startswith("INSERT INTO usage_daily")
    assert any("UPDATE messages" in s for t in transactions for s in t)  # the reply, stored
    assert [row["calls"] for row in usage_rows(client, headers)] == [2]


def test_a_history_page_runs_the_same_statements_whatever_it_holds(app, client, auth):
    headers = auth.register("ada@example.com")
    for number in range(1, 21):
        seed_session(app, "ada@example.com", number, turns=3)
    warm_up(client, headers)
    counts = []
    for page_size in (2, 20):
        with counted_statements(app) as statements:
            response = client.get(f"/api/ai_chat/history?page_size={page_size}", headers=headers)
        assert len(response.json) == page_size
        counts.append(len(statements))
    assert counts[0] == counts[1]


# --- many writers through real gunicorn workers ------------------------------------------------


@pytest.fixture
def served(tmp_path):
    with gunicorn(tmp_path) as server:
        yield server


@pytest.mark.slow
def test_concurrent_writers_through_two_gunicorn_workers(served):
    base, _ = served
    headers = {
        email: register_over_http(base, email, "Load")
        for email in ("same@example.com", "many@example.com")
    }
    statuses, lock = [], threading.Lock()

    def writer(email, thread, session_id, count):
        with requests.Session() as http:
            http.headers.update(headers[email])
            for i in range(count):
                response = http.post(
                    base + "/api/ai_chat/request",
                    json={"content": f"t{thread}-{i}", "model": "echo", "session_id": session_id},
                    timeout=30,
                )
                with lock:
                    statuses.append(response.status_code)

    threads = [
        threading.Thread(target=writer, args=("same@example.com", t, 777, 6)) for t in range(8)
    ] + [
        threading.Thread(target=writer, args=("many@example.com", t, 1000 + t, 6)) for t in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 96

    # Read back through the API: every message exactly once, each thread's in its order.
    same = requests.get(base + "/api/ai_chat/777", headers=headers["same@example.com"]).json()[
        "messages"
    ]
    contents = [m["content"] for m in same]
    assert len(contents) == 96 and len(set(contents)) == 96
    for t in range(8):
        mine = [c for c in contents if c.startswith(f"t{t}-")]
        assert mine == [f"t{t}-{i}" for i in range(6)]
        for i in range(6):
            assert contents.index(f"Echo: t{t}-{i}") > contents.index(f"t{t}-{i}")
    many = requests.get(
        base + "/api/ai_chat/sessions?page_size=100",
        headers=headers["many@example.com"],
    ).json()
    assert sorted((s["chat_id"], s["message_count"]) for s in many) == [
        (1000 + t, 12) for t in range(8)
    ]


# --- a database restart --------------------------------------------------------------------


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs TEST_DATABASE_URL (PostgreSQL)")
def test_database_restart_is_503s_then_recovery_without_restarting(make_app, database_proxy):
    app = make_app({"SQLALCHEMY_DATABASE_URI": database_proxy.url})
    with app.app_context():
        create_user(name="Ada", email="ada@example.com", password=PASSWORD)
    client = app.test_client()
    login = {"username": "ada@example.com", "password": PASSWORD}
    assert client.post("/api/auth/login", data=login).status_code == 200

    database_proxy.set(RESET)  # the database "restarts": connections drop, new ones are refused
    for _ in range(3):
        response = client.post("/api/auth/login", data=login)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
    assert client.get("/readyz").status_code == 503

    database_proxy.set(PASS)  # back up: the same app (the same worker) answers normally again
    assert client.get("/readyz").status_code == 200
    assert client.post("/api/auth/login", data=login).status_code == 200


# --- hundreds of new streams at once through real gunicorn workers -----------------------------

STREAMS = 600


@pytest.fixture
def held_fake():
    """A fake provider of its own whose streams all hold their last chunk until released."""
    fake = FakeProvider(stream_pieces=("Hello", " from", " the", " stream"))
    yield fake
    fake.close()


def stream(base, headers, n) -> str:
    """One new conversation streamed to its end (the native route or /v1, by `n`); its text,
    or why it failed."""
    if n % 2:
        path = "/v1/chat/completions"
        body = {"model": "openai", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        end, failed = b"data: [DONE]", b'data: {"error"'
    else:
        path, body = "/api/ai_chat/request", {"content": "hi", "model": "openai", "stream": True}
        end, failed = b"event: done", b"event: error"
    try:
        with requests.post(base + path, json=body, headers=headers, stream=True, timeout=60) as r:
            seen = b"".join(r.iter_content(chunk_size=None))
    except requests.RequestException as e:
        return f"{path}: {type(e).__name__}"
    if r.status_code != 200 or end not in seen or failed in seen:
        return f"{path}: {r.status_code} {seen[-300:]!r}"
    return "ok"


@pytest.mark.slow
@pytest.mark.parametrize("users", [1, 150])
def test_600_new_streams_at_once_from_one_user_and_from_many(tmp_path, held_fake, users):
    """600 clients open a new conversation's stream at the same moment, through two gunicorn
    workers with the settings `polygenix serve` uses: every stream is open at once (the
    provider holds them all until the last arrives), none fails, and every one is stored whole
    in a session of its own."""
    held = held_fake.reply(times=STREAMS, pause=threading.Event(), wait=60)
    settings = {
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": held_fake.url + "/v1",
        # The threads of `polygenix serve` when none are set.
        "GUNICORN_THREADS": str(
            settings_of_serve({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})["threads"]
        ),
    }
    with gunicorn(tmp_path, settings) as (base, _):
        everyone = [register_over_http(base, f"u{n}@example.com", "Load") for n in range(users)]
        go = threading.Barrier(STREAMS + 1)
        outcomes, lock = [], threading.Lock()

        def client(n):
            go.wait()
            outcome = stream(base, everyone[n % users], n)
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(STREAMS)]
        for t in threads:
            t.start()
        go.wait()
        deadline = time.monotonic() + 45
        while len(held_fake.requests) < STREAMS and time.monotonic() < deadline:
            time.sleep(0.05)
        # Every stream open at once: the last arrived while none had ended.
        all_open = len(held_fake.requests) == STREAMS and not held.finished.is_set()
        opened = len(held_fake.requests)
        held.pause.set()
        for t in threads:
            t.join(timeout=60)
        failures = [o for o in outcomes if o != "ok"]
        assert len(outcomes) == STREAMS and not failures, (len(failures), failures[:5])
        assert all_open, f"{opened} streams had reached the provider when one ended"
        stored = []
        for headers in everyone:
            sessions = requests.get(base + "/api/ai_chat/sessions", headers=headers, timeout=30)
            stored += [s["message_count"] for s in sessions.json()]
        assert stored == [2] * STREAMS
