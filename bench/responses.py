"""What a Responses API turn costs over a Chat Completions turn.

The app runs in this process (Flask's test client) on a fresh SQLite file (or a scratch
PostgreSQL schema with --postgres), with the fake provider on 127.0.0.1 for `openai`; its log
lines go to /dev/null. Each kind of request is a new conversation (so the context stays the
same size), except the continuation, which continues one response (previous_response_id: the
chain of one response is looked up and rebuilt) each time; its chat-completions counterpart
resends one earlier turn. For each: CPU per request (process
time of --count requests in a row, best of --rounds rounds) and the median wall time of
--samples requests; the chat-completions turn and the Responses turns alternate round by round.

    .venv/bin/python bench/responses.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

import argparse
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_migrate import upgrade  # noqa: E402

from polygenix import create_app  # noqa: E402
from tests.fake_provider import FakeProvider  # noqa: E402
from tests.helpers import scratch_schema  # noqa: E402


def calls(client, headers) -> dict:
    def post(path: str, body: dict):
        def call():
            response = client.post(path, headers=headers, json=body)
            assert response.status_code == 200, response.data[:300]
            return response.data

        return call

    chat = {"model": "openai", "messages": [{"role": "user", "content": "bench"}]}
    respond = {"model": "openai", "input": "bench"}
    root = client.post("/v1/responses", headers=headers, json=respond).json["id"]
    earlier = [
        {"role": "user", "content": "bench"},
        {"role": "assistant", "content": "Hello from gpt-4.1-mini"},
    ]
    resent = {"model": "openai", "messages": earlier + chat["messages"]}
    return {
        "chat completion": post("/v1/chat/completions", chat),
        "chat completion with one earlier turn (resent)": post("/v1/chat/completions", resent),
        "response": post("/v1/responses", respond),
        "response continuing one (previous_response_id)": post(
            "/v1/responses", respond | {"previous_response_id": root}
        ),
        "response, store false": post("/v1/responses", respond | {"store": False}),
        "streamed chat completion": post("/v1/chat/completions", chat | {"stream": True}),
        "streamed response": post("/v1/responses", respond | {"stream": True}),
    }


def measure(url: str, fake: FakeProvider, count: int, rounds: int, samples: int) -> dict:
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "s" * 48,
            "JWT_SECRET_KEY": "j" * 64,
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
            "CHAT_RATE_LIMIT": "1000000/minute",
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": fake.url + "/v1",
        }
    )
    with app.app_context():
        upgrade()
    client = app.test_client()
    token = client.post(
        "/api/auth/register",
        json={"name": "Bench", "email": "bench@example.com", "password": "long enough"},
    ).json["access_token"]
    kinds = calls(client, {"Authorization": f"Bearer {token}"})
    cpu = {name: float("inf") for name in kinds}
    walls: dict[str, list[float]] = {name: [] for name in kinds}
    for call in kinds.values():
        call()  # the first request of each kind loads what it needs
    for _ in range(rounds):
        for name, call in kinds.items():
            started = time.process_time()
            for _ in range(count):
                call()
            cpu[name] = min(cpu[name], (time.process_time() - started) / count * 1000)
            for _ in range(samples // rounds or 1):
                started = time.perf_counter()
                call()
                walls[name].append((time.perf_counter() - started) * 1000)
    return {name: (cpu[name], statistics.median(walls[name])) for name in kinds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30, help="requests per CPU round")
    parser.add_argument("--rounds", type=int, default=15, help="CPU rounds (best one counts)")
    parser.add_argument("--samples", type=int, default=90, help="requests per wall-time median")
    parser.add_argument("--postgres", help="also measure on this PostgreSQL (a scratch schema)")
    args = parser.parse_args()
    fake = FakeProvider()
    results = {}
    load = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory() as folder,
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stderr(devnull),
    ):
        sizes = (args.count, args.rounds, args.samples)
        results["SQLite"] = measure(f"sqlite:///{folder}/bench.db", fake, *sizes)
        if args.postgres:
            with scratch_schema("bench", args.postgres) as url:
                results["PostgreSQL"] = measure(url, fake, *sizes)
        logging.shutdown()
    fake.close()
    print(f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after")
    print("| database | request | CPU ms (best round) | wall ms (median) |")
    print("|---|---|---|---|")
    for database, rows in results.items():
        for name, (cpu, wall) in rows.items():
            print(f"| {database} | {name} | {cpu:.2f} | {wall:.2f} |")


if __name__ == "__main__":
    main()
