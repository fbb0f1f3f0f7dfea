"""Streaming through PolyGenix under gunicorn, against the fake provider on the same machine.

Starts the fake provider (each stream: --deltas pieces, --gap seconds apart) and PolyGenix with
the project's gunicorn.conf.py on a fresh SQLite database, then with real HTTP clients (threads
using requests) measures:

- time to first delta: directly from the fake provider vs through PolyGenix (one stream at a
  time, direct and through in turn);
- concurrent streams: for each level, that many streams at once, each read to its `done` event;
  the largest level with zero errors, and the deltas per second delivered at it;
- GET /api/ai_chat/home latency while the largest level's streams are open, vs with none open.

    .venv/bin/python bench/streaming.py                   # levels 50,100,200
    .venv/bin/python bench/streaming.py --levels 50,100,200,300 --deltas 40 --gap 0.05

Everything runs on one machine: the clients' threads compete with the server for the cores.
"""

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fake_provider import FakeProvider  # noqa: E402
from tests.gunicorn_server import gunicorn  # noqa: E402

DELTA = b"event: delta"


def first_delta_direct(fake_url: str) -> float:
    """Seconds until the fake provider's first content piece, asked directly."""
    started = time.perf_counter()
    with requests.post(
        fake_url + "/v1/chat/completions",
        json={"model": "bench", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        stream=True,
        timeout=30,
    ) as response:
        seen = b""
        for chunk in response.iter_content(chunk_size=None):
            seen += chunk
            if b'"content": "p' in seen:  # the first piece, past the role-only chunk
                return time.perf_counter() - started
    raise AssertionError("no delta from the fake provider")


def stream_once(base: str, headers: dict, session_id: int, first: list | None = None) -> int:
    """One whole stream through PolyGenix; returns the number of deltas, raises on failure."""
    started = time.perf_counter()
    body = {"content": "bench", "model": "openai", "session_id": session_id, "stream": True}
    with requests.post(
        base + "/api/ai_chat/request", headers=headers, json=body, stream=True, timeout=120
    ) as response:
        response.raise_for_status()
        seen = b""
        for chunk in response.iter_content(chunk_size=None):
            if first is not None and not first and DELTA in seen + chunk:
                first.append(time.perf_counter() - started)
            seen += chunk
    if b"event: done" not in seen:
        raise AssertionError(seen[-300:])
    return seen.count(DELTA)


def concurrent(base: str, headers: dict, count: int, offset: int) -> tuple[int, int, float]:
    """`count` streams at once: (errors, deltas received, seconds from first start to last end)."""
    errors, deltas, lock = [0], [0], threading.Lock()
    barrier = threading.Barrier(count)

    def run(n):
        barrier.wait()
        try:
            got = stream_once(base, headers, offset + n)
            with lock:
                deltas[0] += got
        except Exception:
            with lock:
                errors[0] += 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors[0], deltas[0], time.perf_counter() - started


def home_latency(base: str, headers: dict, samples: int = 30) -> float:
    timings = []
    with requests.Session() as http:
        for _ in range(samples):
            started = time.perf_counter()
            assert http.get(base + "/api/ai_chat/home", headers=headers, timeout=30).ok
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="50,100,200", help="concurrent streams to try")
    parser.add_argument("--deltas", type=int, default=20, help="pieces per provider stream")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between pieces")
    parser.add_argument("--samples", type=int, default=30, help="sequential streams timed")
    args = parser.parse_args()

    pieces = tuple(f"p{n} " for n in range(args.deltas))
    fake = FakeProvider(stream_pieces=pieces, stream_gap=args.gap)
    settings = {
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": fake.url + "/v1",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "128",
        "DB_POOL_SIZE": "10",
        "DB_MAX_OVERFLOW": "20",
    }
    with tempfile.TemporaryDirectory() as folder, gunicorn(Path(folder), settings) as (base, _):
        token = requests.post(
            base + "/api/auth/register",
            json={"name": "Bench", "email": "bench@example.com", "password": "long enough"},
            timeout=10,
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        # One of each in turn, so that the machine's drifts in speed touch both sides alike.
        direct, through = [], []
        for n in range(args.samples):
            direct.append(first_delta_direct(fake.url))
            first: list[float] = []
            stream_once(base, headers, 1_000_000 + n, first)
            through.append(first[0])
        direct_ms = statistics.median(direct) * 1000
        through_ms = statistics.median(through) * 1000

        idle_home = home_latency(base, headers)
        results = []
        for level in [int(n) for n in args.levels.split(",")]:
            outcome: list = []
            runner = threading.Thread(
                target=lambda lv=level, out=outcome: out.extend(
                    concurrent(base, headers, lv, lv * 1000)
                )
            )
            runner.start()
            time.sleep(args.gap * args.deltas / 3)  # the streams are open now
            busy = home_latency(base, headers, samples=10)
            runner.join()
            results.append((level, *outcome, busy))
        fake.close()

    print(json.dumps({"deltas": args.deltas, "gap": args.gap}))
    print(f"| time to first delta, median of {args.samples} | ms |")
    print("|---|---|")
    print(f"| directly from the fake provider | {direct_ms:.2f} |")
    print(f"| through PolyGenix (gunicorn, 2 workers) | {through_ms:.2f} |")
    print(f"| added by PolyGenix | {through_ms - direct_ms:.2f} |")
    print()
    print(
        "| concurrent streams | errors | deltas/s delivered | wall time s "
        "| GET /home median ms meanwhile |"
    )
    print("|---|---|---|---|---|")
    for level, errors, deltas, seconds, busy in results:
        print(f"| {level} | {errors} | {deltas / seconds:.0f} | {seconds:.2f} | {busy:.2f} |")
    print(f"\nGET /api/ai_chat/home median with no stream open: {idle_home:.2f} ms")
    ok = [level for level, errors, *_ in results if errors == 0]
    print(f"Largest level with zero errors: {max(ok) if ok else 0}")


if __name__ == "__main__":
    main()
