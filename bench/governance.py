"""What governance adds to a chat turn: the model and budget check before the provider call, and
the usage upsert (with the reply's price) in the storing transaction.

In process, on a fresh SQLite file (or a scratch PostgreSQL schema with --postgres), for a user
with a month of usage (30 days x 3 models). Each figure is the median of --samples runs:

- `admit` with the default limits and no budget (one primary-key lookup);
- with a token and a cost budget, `admit` and the call's reservation, committed (the user's row
  locked on PostgreSQL, the reservation inserted, one query for what is used and reserved);
- the usage upsert and its price, against the same transaction without them, and with the
  reservation's release added to it;
- a whole chat turn (the fake provider, in this process, for openai/gpt-4o: priced), with and
  without budgets.

    .venv/bin/python bench/governance.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import text  # noqa: E402

from polygenix import clock, create_app  # noqa: E402
from polygenix.extensions import db  # noqa: E402
from polygenix.governance import ledger  # noqa: E402
from polygenix.governance.policy import admit, governance  # noqa: E402
from polygenix.governance.reservations import release, reserve_call  # noqa: E402
from polygenix.provider_registry import registry  # noqa: E402
from polygenix.providers.base import NO_OPTIONS  # noqa: E402
from tests.fake_provider import FakeProvider  # noqa: E402
from tests.helpers import scratch_schema  # noqa: E402

BUDGETS = {"TOKEN_BUDGET": "1000000000/month", "COST_BUDGET": "1000000/month"}


def median_ms(call, samples: int) -> float:
    call()
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def measure(url: str, fake: FakeProvider, samples: int) -> list[tuple[str, float]]:
    base = {
        "SQLALCHEMY_DATABASE_URI": url,
        "SECRET_KEY": "s" * 48,
        "JWT_SECRET_KEY": "j" * 64,
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        "CHAT_RATE_LIMIT": "1000000/minute",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": fake.url + "/v1",
    }
    plain, budgeted = create_app(base), create_app(base | BUDGETS)
    with plain.app_context():
        upgrade()
    client = plain.test_client()
    token = client.post(
        "/api/auth/register",
        json={"name": "Bench", "email": "bench@example.com", "password": "long enough"},
    ).json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    with plain.app_context():
        user_id = db.session.scalar(text("SELECT id FROM users"))
        today = clock.now().date()
        for day in range(30):
            for model in ("openai/gpt-4o", "groq/llama-3.3-70b-versatile", "echo/echo"):
                ledger.Entry(user_id, today - timedelta(days=day), model, 900, 300, None).add()
        db.session.commit()

    rows = []
    with plain.app_context():
        rows.append(
            (
                "`admit`, default limits, no budget",
                median_ms(lambda: admit(user_id, "openai", "gpt-4o"), samples),
            )
        )
        db.session.commit()
    with budgeted.test_request_context():
        provider = registry()["openai"]

        def admission() -> float:
            """One admission's time; its reservation then released, untimed (a user has a few
            calls in flight, not hundreds)."""
            started = time.perf_counter()
            limits = admit(user_id, "openai", "gpt-4o")
            reservation = reserve_call(
                user_id, limits, governance().prices, provider, "gpt-4o", NO_OPTIONS, 250, False
            )
            db.session.commit()
            elapsed = (time.perf_counter() - started) * 1000
            release(user_id, reservation)
            db.session.commit()
            return elapsed

        admission()
        timings = [admission() for _ in range(samples)]
        rows.append(
            ("`admit` and a reservation, token and cost budgets", statistics.median(timings))
        )
        prices = governance().prices

        def store(with_usage: bool, with_release: bool = False):
            def run():
                db.session.execute(
                    text("UPDATE users SET name = 'Bench' WHERE id = :u"), {"u": user_id}
                )
                if with_usage:
                    now = clock.now()
                    cost = prices.cost("openai", "gpt-4o", "gpt-4o", 900, 300, None, now)
                    ledger.Entry(user_id, now.date(), "openai/gpt-4o", 900, 300, cost).add()
                if with_release:
                    release(user_id, 0)  # as costly as releasing a real one: one indexed DELETE
                db.session.commit()

            return run

        without = median_ms(store(False), samples)
        with_usage = median_ms(store(True), samples)
        with_release = median_ms(store(True, True), samples)
        rows.append(("a storing transaction", without))
        rows.append(("the same with the reply's price and usage upsert", with_usage))
        rows.append(("the same with the reservation's release too", with_release))

    body = {"content": "bench", "model": "openai/gpt-4o"}
    for name, app in (("no budget", plain), ("token and cost budgets", budgeted)):
        turn_client = app.test_client()
        rows.append(
            (
                f"chat turn, openai/gpt-4o, {name}",
                median_ms(
                    lambda c=turn_client: (
                        c.post("/api/ai_chat/request", headers=headers, json=body).data
                    ),
                    samples,
                ),
            )
        )
    for app in (plain, budgeted):
        with app.app_context():
            db.engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--postgres", help="also measure on this PostgreSQL (a scratch schema)")
    args = parser.parse_args()
    fake = FakeProvider()
    results = {}
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        with tempfile.TemporaryDirectory() as folder:
            results["sqlite"] = measure(f"sqlite:///{folder}/bench.db", fake, args.samples)
        if args.postgres:
            with scratch_schema("bench", args.postgres) as url:
                results["postgresql"] = measure(url, fake, args.samples)
    fake.close()
    print("| database | step | median ms |")
    print("|---|---|---|")
    for database, rows in results.items():
        for name, ms in rows:
            print(f"| {database} | {name} | {ms:.3f} |")


if __name__ == "__main__":
    main()
