"""History and chat-turn latency for a small user and a large one, and search latency in a
small database and a large one, on SQLite and PostgreSQL.

Each database gets a fresh schema (a new SQLite file, or a new PostgreSQL schema dropped at the
end), migrated with Alembic, then bulk-filled: a user with --small sessions and one with --large
sessions, --per-session messages each. Requests go through the real app (Flask's test client,
so no HTTP server time is counted) with a real bearer token; each is timed --repeat times.

Search: a user with 2,000 messages, --rare of them holding a word found nowhere else, searches
for it; then another user's 198,000 messages are added (200,000 in all) and the same search is
timed again.

    .venv/bin/python bench/data_tier.py                       # SQLite only
    .venv/bin/python bench/data_tier.py --postgres postgresql+psycopg://postgres@127.0.0.1/test
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import insert, select, text, update  # noqa: E402

from polygenix import create_app  # noqa: E402
from polygenix.auth.tokens import issue_tokens  # noqa: E402
from polygenix.extensions import db  # noqa: E402
from polygenix.models import ChatSession, Message, User  # noqa: E402
from tests.helpers import scratch_schema  # noqa: E402


@contextmanager
def fresh_database(kind: str, postgres: str | None):
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    with scratch_schema("bench", postgres) as url:
        yield url


def fill(email: str, sessions: int, per_session: int) -> int:
    """One user with `sessions` sessions of `per_session` messages, inserted in bulk."""
    user = User(name=email, email=email, password_hash="unused")
    db.session.add(user)
    db.session.commit()
    start = datetime.now(UTC) - timedelta(days=30)
    for first in range(0, sessions, 1000):
        numbers = range(first + 1, min(first + 1000, sessions) + 1)
        ids = db.session.scalars(
            insert(ChatSession).returning(ChatSession.id),
            [
                {
                    "user_id": user.id,
                    "number": n,
                    "title": f"Session {n}",
                    "created_at": start + timedelta(minutes=n),
                    "updated_at": start + timedelta(minutes=n),
                }
                for n in numbers
            ],
        ).all()
        db.session.execute(
            insert(Message),
            [
                {
                    "session_id": session_id,
                    "is_bot": m % 2 == 1,
                    "content": f"message {m} " + "lorem ipsum " * 20,
                    "model": "echo/echo" if m % 2 else None,
                    "created_at": start + timedelta(minutes=m),
                }
                for session_id in ids
                for m in range(per_session)
            ],
        )
        db.session.commit()
    return user.id


HISTORY = "/api/ai_chat/history?page_size=10"
SESSIONS = "/api/ai_chat/sessions?page_size=10"


def timed(call, repeat: int) -> tuple[float, float]:
    """Median and 95th percentile in milliseconds, after two warm-up calls."""
    for _ in range(2):
        call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def bench_app(url: str):
    os.environ.setdefault("POLYGENIX_INSTANCE_PATH", tempfile.mkdtemp())
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "bench-" + "s" * 40,
            "JWT_SECRET_KEY": "bench-" + "j" * 60,
            "RATELIMIT_ENABLED": False,
            "REDIS_URL": None,
        }
    )


def measure(url: str, args) -> list[tuple[str, str, float, float]]:
    app = bench_app(url)
    results = []
    with app.app_context():
        upgrade()
        users = {
            "small": fill("small@bench.example", args.small, args.per_session),
            "large": fill("large@bench.example", args.large, args.per_session),
        }
        analyze()
        tokens = {
            size: issue_tokens(db.session.get(User, uid))["access_token"]
            for size, uid in users.items()
        }
    client = app.test_client()
    for size, token in tokens.items():
        headers = {"Authorization": f"Bearer {token}"}

        def get(path, headers=headers):
            response = client.get(path, headers=headers)
            assert response.status_code == 200, response.json
            response.close()

        def turn(headers=headers):
            response = client.post(
                "/api/ai_chat/request",
                headers=headers,
                json={"content": "How long is this session?", "model": "echo", "session_id": 5},
            )
            assert response.status_code == 200, response.json

        for name, call in [
            # One page of the same size for both users (the small one has only 10 sessions).
            ("GET /api/ai_chat/history?page_size=10", lambda: get(HISTORY)),
            ("GET /api/ai_chat/sessions?page_size=10", lambda: get(SESSIONS)),
            ("POST /api/ai_chat/request", turn),
        ]:
            results.append((name, size, *timed(call, args.repeat)))
    with app.app_context():
        db.engine.dispose()
    return results


RARE_WORD = "zephyrine"
SEARCH = f"/api/ai_chat/search?q={RARE_WORD}"


def analyze() -> None:
    """Table statistics, as autovacuum gathers them soon after a bulk load: without them
    PostgreSQL plans for the tables as they were when empty."""
    db.session.execute(text("ANALYZE"))
    db.session.commit()


def measure_search(url: str, args) -> dict[str, tuple[float, float]]:
    """The search's median and p95 with 2,000 messages in the database, then with 200,000."""
    app = bench_app(url)
    with app.app_context():
        upgrade()
        user_id = fill("searcher@bench.example", 100, 20)
        rare = db.session.scalars(
            select(Message.id)
            .join(ChatSession, ChatSession.id == Message.session_id)
            .where(ChatSession.user_id == user_id)
            .order_by(Message.id)
            .limit(args.rare)
        ).all()
        db.session.execute(
            update(Message)
            .where(Message.id.in_(rare))
            .values(content=Message.content + f" {RARE_WORD}")
        )
        db.session.commit()
        analyze()
        token = issue_tokens(db.session.get(User, user_id))["access_token"]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def search():
        response = client.get(SEARCH, headers=headers)
        assert response.status_code == 200, response.json
        assert len(response.json) == args.rare, response.json
        response.close()

    results = {"2,000": timed(search, args.repeat)}
    with app.app_context():
        fill("others@bench.example", 9_900, 20)
        analyze()
    results["200,000"] = timed(search, args.repeat)
    with app.app_context():
        db.engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="also measure on this PostgreSQL database")
    parser.add_argument("--small", type=int, default=10, help="sessions of the small user")
    parser.add_argument("--large", type=int, default=10_000, help="sessions of the large user")
    parser.add_argument("--per-session", type=int, default=20, help="messages per session")
    parser.add_argument("--repeat", type=int, default=50, help="timed calls per measurement")
    parser.add_argument("--rare", type=int, default=20, help="messages with the searched word")
    parser.add_argument("--only", choices=["history", "search"], help="one of the two parts")
    args = parser.parse_args()
    kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    if args.only != "search":
        history_table(kinds, args)
    if args.only != "history":
        search_table(kinds, args)


def search_table(kinds: list[str], args) -> None:
    print(
        f"\n| database | `GET {SEARCH}` | 2,000 messages: median / p95 ms "
        "| 200,000 messages: median / p95 ms | 200,000 ÷ 2,000 (medians) |"
    )
    print("|---|---|---|---|---|")
    for kind in kinds:
        with fresh_database(kind, args.postgres) as url:
            small, large = measure_search(url, args).values()
        print(
            f"| {kind} | {args.rare} found | {small[0]:.2f} / {small[1]:.2f} "
            f"| {large[0]:.2f} / {large[1]:.2f} | {large[0] / small[0]:.2f}× |"
        )
        sys.stdout.flush()


def history_table(kinds: list[str], args) -> None:
    print(
        "| database | call | small user: median / p95 ms | large user: median / p95 ms "
        "| large ÷ small (medians) |"
    )
    print("|---|---|---|---|---|")
    for kind in kinds:
        with fresh_database(kind, args.postgres) as url:
            rows = measure(url, args)
        by_call: dict[str, dict[str, tuple[float, float]]] = {}
        for name, size, median, p95 in rows:
            by_call.setdefault(name, {})[size] = (median, p95)
        for name, sizes in by_call.items():
            (sm, sp), (lm, lp) = sizes["small"], sizes["large"]
            print(
                f"| {kind} | `{name}` | {sm:.2f} / {sp:.2f} | {lm:.2f} / {lp:.2f} "
                f"| {lm / sm:.2f}× |"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
