"""What a chat turn writes: its transactions, statements and database round trips.

The app runs in this process (Flask's test client) with the fake provider on 127.0.0.1, on a
fresh SQLite file, on a scratch PostgreSQL schema (--postgres) and on PostgreSQL with Redis
(--redis). PostgreSQL and Redis are reached through a proxy on 127.0.0.1 that counts round
trips (each time the client speaks after the server answered). Each kind of request is made
once after warming up, its database work recorded by SQLAlchemy's events: transactions (those
with an INSERT, UPDATE or DELETE are write transactions; a statement sent in autocommit is a
transaction of its own), statements by kind, commits. Then CPU per request in this process
(process time of --count requests in a row, best of --rounds rounds; the fake provider's share
included). Calls use an access token (an API key adds one
write a minute, its last use).

    .venv/bin/python bench/write_path.py \
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test --redis redis://127.0.0.1:6379/0
"""

import argparse
import contextlib
import logging
import os
import re
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import event, make_url  # noqa: E402

from polygenix import create_app  # noqa: E402
from polygenix.extensions import db  # noqa: E402
from polygenix.models import User, UserLimits  # noqa: E402
from tests.fake_provider import FakeProvider  # noqa: E402
from tests.helpers import scratch_schema  # noqa: E402

SDK = {"X-Stainless-Retry-Count": "0"}
WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|WITH\b.*\b(INSERT|UPDATE|DELETE)\b)", re.I | re.S)


class CountingProxy:
    """TCP on 127.0.0.1 to `target`, counting round trips: client bursts after a server answer."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.round_trips = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self._listener.accept()
            server = socket.create_connection(self.target)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            state = {"last": "server"}
            for source, sink, side in ((client, server, "client"), (server, client, "server")):
                threading.Thread(
                    target=self._pump, args=(source, sink, side, state), daemon=True
                ).start()

    def _pump(self, source, sink, side, state) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                with self._lock:
                    if side == "client" and state["last"] == "server":
                        self.round_trips += 1
                    state["last"] = side
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class Recorder:
    """Transactions, statements and commits of an engine, while `on`. A statement sent in
    autocommit (PostgreSQL, no BEGIN nor COMMIT) is a transaction of its own."""

    def __init__(self, engine):
        self.on = False
        self.transactions: list[list[str]] = []
        self._open: dict[int, list[tuple[str, bool]]] = {}
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._end)
        event.listen(engine, "rollback", self._end)

    def _begin(self, connection):
        self._open[id(connection)] = []

    def _statement(self, connection, cursor, statement, *args):
        alone = bool(getattr(cursor.connection, "autocommit", False))
        self._open.setdefault(id(connection), []).append((statement, alone))

    def _end(self, connection):
        statements = self._open.pop(id(connection), [])
        if self.on:
            self.transactions.extend([s] for s, alone in statements if alone)
            if together := [s for s, alone in statements if not alone]:
                self.transactions.append(together)

    def reset(self):
        self.transactions = []


def kinds(client, headers) -> dict:
    def post(path: str, body: dict, sent: dict | None = None):
        def call():
            response = client.post(path, headers=headers | (sent or {}), json=body)
            assert response.status_code == 200, response.data[:300]
            return response.data

        return call

    v1 = {"model": "openai", "messages": [{"role": "user", "content": "bench"}]}
    native = {"model": "openai", "content": "bench"}
    session = client.post("/api/ai_chat/request", headers=headers, json=native).json["session_id"]
    first = client.post("/v1/responses", headers=headers, json={"model": "openai", "input": "b"})
    numbered = {**headers, "X-PolyGenix-Session": first.headers["X-PolyGenix-Session"]}

    def in_session(body: dict):  # a /v1 chat completion in that existing session
        def call():
            response = client.post("/v1/chat/completions", headers=numbered, json=body)
            assert response.status_code == 200, response.data[:300]
            return response.data

        return call

    return {
        "/v1 chat completion (a new conversation)": post("/v1/chat/completions", v1),
        "/v1 chat completion, streamed": post("/v1/chat/completions", v1 | {"stream": True}),
        "/v1 response (a new conversation)": post(
            "/v1/responses", {"model": "openai", "input": "bench"}
        ),
        # An official SDK's first attempt: the body's digest is the call's retry key, claimed.
        "/v1 response from an SDK (X-Stainless-Retry-Count: 0, a new conversation)": post(
            "/v1/responses", {"model": "openai", "input": "sdk"}, SDK
        ),
        "/v1 chat completion, an existing session": in_session(v1),
        "/v1 response, a continuation (previous_response_id), an existing session": post(
            "/v1/responses",
            {"model": "openai", "input": "bench", "previous_response_id": first.json["id"]},
        ),
        "/v1 response from an SDK, a continuation, an existing session": post(
            "/v1/responses",
            {"model": "openai", "input": "sdk", "previous_response_id": first.json["id"]},
            SDK,
        ),
        "native turn, new session": post("/api/ai_chat/request", native),
        "native turn, existing session": post(
            "/api/ai_chat/request", native | {"session_id": session}
        ),
        "native turn, streamed, existing session": post(
            "/api/ai_chat/request", native | {"session_id": session, "stream": True}
        ),
    }


def measure(url: str, redis: str | None, fake: FakeProvider, args) -> list[tuple]:
    proxies = []
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        proxy = CountingProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
        url = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        proxies.append(("PostgreSQL", proxy))
    config = {
        "SQLALCHEMY_DATABASE_URI": url,
        "SECRET_KEY": "s" * 48,
        "JWT_SECRET_KEY": "j" * 64,
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        "CHAT_RATE_LIMIT": "1000000/minute",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": fake.url + "/v1",
        "SYSTEM_PROMPT": "",
        "JOBS_IN_WEB_WORKERS": False,
    }
    if redis:
        redis_url = make_url(redis)
        proxy = CountingProxy(redis_url.host or "127.0.0.1", redis_url.port or 6379)
        config["REDIS_URL"] = str(redis_url.set(host="127.0.0.1", port=proxy.port))
        config["REDIS_KEY_PREFIX"] = f"polygenix-bench-{os.getpid()}:"
        proxies.append(("Redis", proxy))
    app = create_app(config)
    with app.app_context():
        upgrade()
        recorder = Recorder(db.engine)
    client = app.test_client()
    rows = []
    for budget in (False, True):
        email = f"bench{int(budget)}@example.com"
        token = client.post(
            "/api/auth/register",
            json={"name": "Bench", "email": email, "password": "long enough"},
        ).json["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        if budget:
            with app.app_context():
                user = db.session.scalar(db.select(User).where(User.email == email))
                db.session.add(UserLimits(user_id=user.id, token_budget="10000000/day"))
                db.session.commit()
        calls = kinds(client, headers)
        if budget:  # one of each is enough to see what a reservation adds
            calls = {
                f"{name}, with a token budget": call
                for name, call in calls.items()
                if "existing session" not in name or "streamed" in name
            }
        for call in calls.values():
            call()
            call()
        for name, call in calls.items():
            before = {n: p.round_trips for n, p in proxies}
            recorder.reset()
            recorder.on = True
            call()
            recorder.on = False
            time.sleep(0.05)  # the proxy's last bytes
            trips = {n: p.round_trips - before[n] for n, p in proxies}
            best = float("inf")
            for _ in range(args.rounds):
                started = time.process_time()
                for _ in range(args.count):
                    call()
                best = min(best, (time.process_time() - started) / args.count * 1000)
            statements = Counter(
                s.split(None, 1)[0].upper() for t in recorder.transactions for s in t
            )
            writes = [t for t in recorder.transactions if any(WRITE.match(s) for s in t)]
            rows.append((name, len(recorder.transactions), writes, statements, trips, best))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="also on this PostgreSQL (a scratch schema)")
    parser.add_argument("--redis", help="and on PostgreSQL with this Redis")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--verbose", action="store_true", help="print each write transaction")
    args = parser.parse_args()
    fake = FakeProvider()
    results = {}
    with (
        tempfile.TemporaryDirectory() as folder,
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stderr(devnull),
    ):
        results["SQLite"] = measure(f"sqlite:///{folder}/bench.db", None, fake, args)
        if args.postgres:
            with scratch_schema("bench", args.postgres) as url:
                results["PostgreSQL"] = measure(url, None, fake, args)
            if args.redis:
                with scratch_schema("bench", args.postgres) as url:
                    results["PostgreSQL + Redis"] = measure(url, args.redis, fake, args)
        logging.shutdown()
    fake.close()
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(
        "| database | request | transactions (writes) | statements | PostgreSQL round trips "
        "| Redis round trips | CPU ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for database, rows in results.items():
        for name, transactions, writes, statements, trips, cpu in rows:
            kinds_ = ", ".join(f"{n} {k}" for k, n in sorted(statements.items()))
            print(
                f"| {database} | {name} | {transactions} ({len(writes)}) | {kinds_} "
                f"| {trips.get('PostgreSQL', '–')} | {trips.get('Redis', '–')} | {cpu:.2f} |"
            )
            if args.verbose:
                for t in writes:
                    print("    write transaction:", " / ".join(s.split("\n")[0][:70] for s in t))


if __name__ == "__main__":
    main()
