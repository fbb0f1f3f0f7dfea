"""What the largest /v1 request allowed costs the other users of the server.

PolyGenix under the project's gunicorn.conf.py (two workers) on a fresh SQLite file (or, with
--postgres, a scratch PostgreSQL schema). One user sends, back to back, the largest conversation
POST /v1/chat/completions accepts: V1_MAX_MESSAGES messages filling CONTEXT_MAX_CHARS, each a new
conversation whose earlier messages are stored as a new session. Meanwhile another user chats
(POST /api/ai_chat/request, the offline `echo` model) one request after another. Reported: the
other user's latency alone and during the flood (median, p95, max) and every status that was
not a 200, and the maximal request's own latency. Run once with the default CONTEXT_MAX_CHARS
and once with one that fills the 1 MiB body limit.

    .venv/bin/python bench/flood.py [--seconds 20] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAX_MESSAGES = 500


def stats(latencies: list[float]) -> str:
    if not latencies:
        return "–"
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"{statistics.median(ordered):.1f} / {p95:.1f} / {ordered[-1]:.1f}"


def maximal(context_chars: int, round_: int) -> list[dict]:
    """V1_MAX_MESSAGES messages of equal length filling `context_chars`, the user's last."""
    size = context_chars // MAX_MESSAGES - 1
    return [
        {"role": "assistant" if n % 2 == 0 else "user", "content": f"{round_ % 10}" * size}
        for n in range(MAX_MESSAGES)
    ]


def chat(base: str, headers: dict, statuses: Counter, latencies: list[float]) -> None:
    started = time.perf_counter()
    response = requests.post(
        base + "/api/ai_chat/request",
        headers=headers,
        json={"content": "still here?", "model": "echo", "session_id": 1},
        timeout=120,
    )
    latencies.append((time.perf_counter() - started) * 1000)
    statuses[response.status_code] += 1


def measure(context_chars: int, seconds: float) -> dict:
    from tests.gunicorn_server import gunicorn, register_over_http

    settings = {"V1_MAX_MESSAGES": str(MAX_MESSAGES), "CONTEXT_MAX_CHARS": str(context_chars)}
    with tempfile.TemporaryDirectory() as folder, gunicorn(Path(folder), settings) as (base, _):
        flooder = register_over_http(base, "flood@example.com", "Flood")
        other = register_over_http(base, "other@example.com", "Other")
        alone, alone_statuses = [], Counter()
        deadline = time.monotonic() + seconds / 2
        while time.monotonic() < deadline:
            chat(base, other, alone_statuses, alone)
        during, during_statuses = [], Counter()
        floods, flood_statuses = [], Counter()
        stop = threading.Event()

        def flood() -> None:
            round_ = 0
            while not stop.is_set():
                body = {"model": "echo", "messages": maximal(context_chars, round_)}
                started = time.perf_counter()
                response = requests.post(
                    base + "/v1/chat/completions", headers=flooder, json=body, timeout=120
                )
                floods.append((time.perf_counter() - started) * 1000)
                flood_statuses[response.status_code] += 1
                round_ += 1

        thread = threading.Thread(target=flood)
        thread.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            chat(base, other, during_statuses, during)
        stop.set()
        thread.join()
        body_bytes = len(json.dumps({"model": "echo", "messages": maximal(context_chars, 0)}))
    return {
        "context": context_chars,
        "body": body_bytes,
        "alone": stats(alone),
        "alone_statuses": dict(alone_statuses),
        "during": stats(during),
        "during_statuses": dict(during_statuses),
        "chats": len(during),
        "flood": stats(floods),
        "flood_statuses": dict(flood_statuses),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--postgres", help="a PostgreSQL URL to measure on instead of SQLite")
    args = parser.parse_args()
    if args.postgres:
        os.environ["TEST_DATABASE_URL"] = args.postgres
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(
        "| database | CONTEXT_MAX_CHARS (body) | other user alone: median / p95 / max ms | "
        "during the flood | other's statuses | maximal request: median / p95 / max ms | "
        "its statuses |"
    )
    print("|---|---|---|---|---|---|---|")
    for context in (24_000, 1_000_000):
        r = measure(context, args.seconds)
        print(
            f"| {database} | {r['context']:,} ({r['body'] / 1024:,.0f} KiB) | {r['alone']} | "
            f"{r['during']} | {r['during_statuses']} ({r['chats']} chats) | {r['flood']} | "
            f"{r['flood_statuses']} |"
        )


if __name__ == "__main__":
    main()
