"""Assertions, values and database helpers the test modules share."""

import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, func, make_url, select
from werkzeug.serving import make_server

from config import database_url
from polygenix.auth.passwords import SLOTS
from polygenix.extensions import db
from polygenix.models import ChatSession, Message, StoredResponse, UsageDaily

ROOT = Path(__file__).resolve().parent.parent  # the repository
PASSWORD = "correct horse battery"
# The models the tests name most: OpenAI's default chat model, and the one titles are asked of.
OPENAI = "openai/gpt-4.1-mini"
TITLE_MODEL = "groq/llama-3.1-8b-instant"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
# Keys the tests leave in Redis: recognisable, and this run's own (runs may share one Redis).
REDIS_TEST_PREFIX = f"polygenix-test-{os.getpid()}:"


@contextmanager
def scratch_schema(prefix: str, database: str | None = None):
    """A new, empty PostgreSQL schema in `database` (default TEST_DATABASE_URL); yields a URL
    that uses it, and drops it afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    url = make_url(database_url(database or TEST_DATABASE_URL))
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        scoped = url.update_query_dict({"options": f"-csearch_path={name}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_envelope(response, code, message=None):
    """The one error shape: code, status, message, and detail equal to message."""
    assert response.status_code == code
    assert response.is_json, response.data[:200]
    body = response.json
    assert body["code"] == code
    assert isinstance(body["status"], str) and body["status"]
    assert body["detail"] == body["message"]
    if message is not None:
        assert message in body["message"]
    return body


@contextmanager
def busy_password_slots(app):
    """Every password-check slot of `app` taken, as by a burst of logins: password checks meanwhile
    wait PASSWORD_HASH_TIMEOUT, then fail with a 503."""
    slots = app.extensions[SLOTS]
    count = app.config["PASSWORD_HASH_CONCURRENCY"]
    for _ in range(count):
        slots.acquire()
    try:
        yield
    finally:
        for _ in range(count):
            slots.release()


def closed_port() -> int:
    """A local TCP port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Databases nothing answers at: a SQLite file that cannot be created, a PostgreSQL port no one
# listens on.
UNREACHABLE_DATABASES = [
    "sqlite:////nonexistent-directory/polygenix.db",
    f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/test?connect_timeout=2",
]


class FakeClock:
    """A clock for the app's CLOCK setting: it stands still until a test moves it."""

    def __init__(self, start: float | None = None):
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


CHAT = "/api/ai_chat/request"


def ask(client, headers, content="hello there", model="echo", **extra):
    """One chat turn, not streamed."""
    return client.post(CHAT, headers=headers, json={"content": content, "model": model} | extra)


def stream(client, headers, model, content="Stream it", session_id=None, **extra):
    """One chat turn, streamed: the response's body is the event stream."""
    body = {"content": content, "model": model, "session_id": session_id, "stream": True}
    return client.post(CHAT, headers=headers, json=body | extra)


def sessions(client, headers) -> list[tuple[int, list[str]]]:
    """The user's saved sessions: (chat_id, their messages' contents)."""
    return [
        (s["chat_id"], [m["content"] for m in s["messages"]])
        for s in client.get("/api/ai_chat/history", headers=headers).json
    ]


def saved(client, headers, **query) -> list[tuple[int, list[tuple[str, bool]]]]:
    """The user's saved sessions: (chat_id, [(content, failed)]); `query` goes to the history."""
    sessions = client.get("/api/ai_chat/history", headers=headers, query_string=query).json
    return [(s["chat_id"], [(m["content"], m["failed"]) for m in s["messages"]]) for s in sessions]


def messages(app) -> list[Message]:
    """Every stored message, in the order they were written."""
    with app.app_context():
        return db.session.scalars(select(Message).order_by(Message.id)).all()


EMBEDDINGS = "/v1/embeddings"


def embed(client, headers, **body):
    return client.post(EMBEDDINGS, headers=headers, json=body)


def usage_rows(client, headers) -> list[dict]:
    """The user's usage report, a row per model."""
    return client.get("/api/usage?group_by=model", headers=headers).json["rows"]


def read_events(text: str) -> list[tuple[str, object]]:
    """The (event, data) pairs of an SSE body, comments as ("comment", text)."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        if block.startswith(":"):
            events.append(("comment", block[1:].strip()))
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def wait_for(condition, timeout: float = 5.0, what: str = "condition", interval: float = 0.005):
    """Poll `condition` every `interval` seconds until it holds (for events in another thread
    or process); its first true value."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
    return value


def operations(spec):
    """((path, method), operation) for every operation of an OpenAPI spec."""
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield (path, method), operation


@contextmanager
def counted_statements(app):
    """The SQL statements `app` runs inside the block, as a list filled in as they run."""
    statements: list[str] = []
    with app.app_context():
        engine = db.engine

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


@contextmanager
def before_statement(app, fragment: str | Callable[[str], bool], action):
    """`action()` once, just before `app` sends its first statement that contains `fragment`
    (or for which `fragment(sql)` holds, given a function): a race's other side, an outage, at
    a chosen point of a request. Yields a list that holds that statement once it is sent.
    Statements `action` sends itself are not matched."""
    with app.app_context():
        engine = db.engine
    sent: list[str] = []
    matches = fragment if callable(fragment) else lambda sql: fragment in sql

    def statement(_conn, _cursor, sql, *_args):
        if not sent and matches(sql):
            sent.append(sql)  # before acting: what the action sends does not fire it again
            action()

    event.listen(engine, "before_cursor_execute", statement)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", statement)


# A statement that writes: an INSERT, UPDATE or DELETE, or a WITH with one in it.
WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|WITH\b.*\b(INSERT|UPDATE|DELETE)\b)", re.I | re.S)


@contextmanager
def counted_transactions(app, *, writes: bool = False, alone: bool = False):
    """The transactions `app` ends inside the block (committed or rolled back), each as the list
    of its SQL statements, filled in as they end. With `writes`, only those that wrote; with
    `alone`, each statement as (SQL, whether its connection sent it in autocommit: no BEGIN nor
    COMMIT)."""
    transactions: list[list] = []
    running: dict[int, list] = {}
    with app.app_context():
        engine = db.engine

    def statement(conn, cursor, text, *args):
        autocommit = bool(getattr(cursor.connection, "autocommit", False))
        running.setdefault(id(conn), []).append((text, autocommit) if alone else text)

    def ended(conn):
        done = running.pop(id(conn), [])
        texts = [entry[0] if alone else entry for entry in done]
        if not writes or any(WRITE.match(text) for text in texts):
            transactions.append(done)

    listeners = [("before_cursor_execute", statement), ("commit", ended), ("rollback", ended)]
    for name, listener in listeners:
        event.listen(engine, name, listener)
    try:
        yield transactions
    finally:
        for name, listener in listeners:
            event.remove(engine, name, listener)


def write_transactions(app):
    """The write transactions `app` ends inside the block, each a list of its statements as
    (SQL, whether it was sent in autocommit)."""
    return counted_transactions(app, writes=True, alone=True)


def store_of(transactions, marker: str) -> list[tuple[str, bool]]:
    """Of `write_transactions`, the one transaction with a statement that holds `marker` (the
    one that stored a turn)."""
    [store] = [t for t in transactions if any(marker in s for s, _ in t)]
    return store


def stored_responses(app) -> list[StoredResponse]:
    """Every Responses API record, oldest first, detached from the session."""
    with app.app_context():
        rows = db.session.scalars(select(StoredResponse).order_by(StoredResponse.id)).all()
        db.session.expunge_all()
        return list(rows)


# --- /v1/responses and /v1/chat/completions against the fake provider --------------------------

SESSION = "X-PolyGenix-Session"  # the header that names a /v1 call's session
HELLO = "Hello from gpt-4.1-mini"  # the fake provider's answer as `openai`
on_postgresql = pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL's data-modifying WITH")


@pytest.fixture
def fake_provider_app(provider_app):
    """A test module's `app` (`app = fake_provider_app`): the fake provider's models, echo too."""
    return provider_app


def respond(client, headers, model="echo", **fields):
    """A /v1/responses call."""
    return client.post("/v1/responses", headers=headers, json={"model": model} | fields)


def complete(client, headers, content, model="echo"):
    """A /v1/chat/completions call of one user message."""
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return client.post("/v1/chat/completions", headers=headers, json=body)


def record(app, public_id: str) -> StoredResponse:
    """The Responses API record of `public_id`."""
    [row] = [r for r in stored_responses(app) if r.public_id == public_id]
    return row


def row_counts(app) -> tuple[int, int, int, int]:
    """Rows of every table a turn writes: sessions, messages, records, usage."""
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(model))
            for model in (ChatSession, Message, StoredResponse, UsageDaily)
        )


def said(fake) -> list[tuple[str, str]]:
    """What the provider was sent last, but the system prompt."""
    sent = fake.requests[-1].body["messages"]
    return [(m["role"], m["content"]) for m in sent if m["role"] != "system"]


def warm_up(client, headers):
    """One chat request first (any will do), so that the requests counted after it do none of a
    fresh app's first-request work."""
    assert client.get("/api/ai_chat/home", headers=headers).status_code == 200


def token_counts(usage: dict) -> dict:
    """A reply's usage without its cost (tests/test_governance.py checks costs)."""
    return {k: v for k, v in usage.items() if k != "cost_usd"}


def sample(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        base, _, rest = metric.partition("{")
        found = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if base == name and found == wanted:
            return float(value)
    return 0.0


@contextmanager
def serving(app):
    """The app over real HTTP (werkzeug's threaded server, in this process): its base URL."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()


def in_thread(call):
    """Run `call` in a thread; the returned function joins it and gives its result."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", call()))
    thread.start()

    def join():
        thread.join(timeout=10)
        assert not thread.is_alive()
        return result["value"]

    return join


def at_once(call, times: int, timeout: float = 30) -> list:
    """`call()` in `times` threads let go together: their results, in the order they ended."""
    go = threading.Barrier(times)
    results, lock = [], threading.Lock()

    def run():
        go.wait()
        result = call()
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return results


def amid_a_deletion(app, call, times: int, delete, started, timeout: float = 60):
    """A burst of one user's requests racing a deletion: `call(client)` in `times` threads let
    go together, each with a test client of its own, and `delete()` (the account's deletion,
    say) once `started()` says the burst is under way. What `delete()` returned, and what each
    call returned, in the order they ended; a call that never ends (a thread stuck behind a
    lock, or one that raised) fails the test."""
    go = threading.Barrier(times + 1)
    results, lock = [], threading.Lock()

    def run():
        client = app.test_client()
        go.wait()
        result = call(client)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    go.wait()
    wait_for(started, timeout=30, what="the burst under way")
    deleted = delete()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert len(results) == times, f"{times - len(results)} of {times} calls never ended"
    return deleted, results
