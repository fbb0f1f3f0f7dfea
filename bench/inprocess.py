"""What one request costs inside the app, with no HTTP server, and how much slower it runs when
the process has been idle.

The app runs in this process (Flask's test client) on a fresh SQLite file, with the fake
provider on 127.0.0.1 for `openai`; its log lines go to /dev/null. For each request:

- CPU per request: process time of --count requests in a row, best of --rounds rounds (the best
  round is the one the machine disturbed least, so small changes show);
- wall time, median of --samples single requests: back to back, and each after the process has
  slept 0.15 s and 1 s (a streamed reply's first request and most requests of a quiet server
  find the process like that).

    .venv/bin/python bench/inprocess.py
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

IDLE = (0.15, 1.0)


def cpu_ms(call, count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(count):
            call()
        best = min(best, (time.process_time() - started) / count)
    return best * 1000


def wall_ms(call, samples: int, idle: float) -> float:
    timings = []
    for _ in range(samples):
        time.sleep(idle)
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="requests per CPU round")
    parser.add_argument("--rounds", type=int, default=15, help="CPU rounds (best one counts)")
    parser.add_argument("--samples", type=int, default=20, help="requests per wall-time median")
    args = parser.parse_args()

    fake = FakeProvider()
    with (
        tempfile.TemporaryDirectory() as folder,
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stderr(devnull),
    ):
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder}/bench.db",
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
        headers = {"Authorization": f"Bearer {token}"}

        def turn(model: str, stream: bool = False):
            # A new session each time, so the context stays the same size.
            body = {"content": "bench", "model": model, "stream": stream}
            return lambda: client.post("/api/ai_chat/request", headers=headers, json=body).data

        calls = {
            "GET /api/ai_chat/home": lambda: client.get("/api/ai_chat/home", headers=headers),
            "chat turn, echo": turn("echo"),
            "chat turn, openai (fake provider in this process)": turn("openai"),
            "streamed chat turn, openai (fake provider in this process)": turn("openai", True),
        }
        rows = []
        for name, call in calls.items():
            call()  # the first request of each kind loads what it needs
            cpu = cpu_ms(call, args.count, args.rounds)
            walls = [wall_ms(call, args.samples, idle) for idle in (0.0, *IDLE)]
            rows.append((name, cpu, walls))
        logging.shutdown()
    fake.close()

    print(
        "| request | CPU ms (best round) | wall ms, back to back "
        "| after 0.15 s idle | after 1 s idle |"
    )
    print("|---|---|---|---|---|")
    for name, cpu, walls in rows:
        print(f"| {name} | {cpu:.2f} | " + " | ".join(f"{w:.2f}" for w in walls) + " |")


if __name__ == "__main__":
    main()
