"""What PolyGenix costs: proxy overhead, authenticated throughput, login cost, worker memory.

Starts the fake provider (0 ms and 100 ms of provider latency) and PolyGenix under the project's
gunicorn.conf.py on a fresh SQLite database, then measures with wrk (Lua scripts in bench/wrk/):

P1  latency added to a chat turn over calling the fake provider directly, 8 concurrent clients,
    through the native POST /api/ai_chat/request and the OpenAI-compatible POST /v1/chat/completions
P4  authenticated GET /api/ai_chat/home requests/s, as a fraction of a bare Flask endpoint
    (bench/bare_app.py) under the same gunicorn settings

Each comparison runs in --rounds alternating rounds (direct, through, direct, through...) and
reports the median of each side: on a small shared machine one run can be twice another.
P5  login latency as a multiple of one password verification (the configured scrypt)
P6  worker resident memory after 10,000 mixed requests, and its growth over the last 5,000

    .venv/bin/python bench/overhead.py            # needs wrk (Debian: apt-get install wrk)
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_provider import FakeProvider  # noqa: E402
from tests.gunicorn_server import gunicorn, served  # noqa: E402

WRK = ROOT / "bench" / "wrk"
PASSWORD = "benchmark secret"


def wrk(url: str, script: str, env: dict, *, connections=8, seconds=10) -> dict:
    """Run wrk; return requests/s and latency percentiles (ms) from its --latency report."""
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(WRK / script),
            url,
        ],
        env=os.environ | env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)\b", out).groups()
        result[f"p{pct}"] = float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = int(errors.group(1)) if errors else 0
    return result


def register(base: str) -> str:
    body = {"name": "Bench", "email": "bench@example.com", "password": PASSWORD}
    return requests.post(base + "/api/auth/register", json=body, timeout=30).json()["access_token"]


def alternating(rounds: int, *runs) -> list[dict]:
    """Run each wrk call in turn, `rounds` times; for each, the medians of its rounds, the
    range of its requests/s and its errors in all."""
    results = [[] for _ in runs]
    for _ in range(rounds):
        for collected, run in zip(results, runs, strict=True):
            collected.append(run())
    return [
        {key: statistics.median(r[key] for r in collected) for key in ("rps", "p50", "p99")}
        | {
            "rps_range": (min(r["rps"] for r in collected), max(r["rps"] for r in collected)),
            "errors": sum(r["errors"] for r in collected),
        }
        for collected in results
    ]


def p1(base: str, fake: FakeProvider, token: str, seconds: int, rounds: int) -> list[tuple]:
    rows = []
    for delay in (0.0, 0.1):
        fake.default_delay = delay
        direct, native, openai = alternating(
            rounds,
            lambda: wrk(fake.url + "/v1/chat/completions", "provider.lua", {}, seconds=seconds),
            lambda: wrk(
                base + "/api/ai_chat/request", "chat.lua", {"TOKEN": token}, seconds=seconds
            ),
            lambda: wrk(base + "/v1/chat/completions", "v1.lua", {"TOKEN": token}, seconds=seconds),
        )
        rows.append((delay, direct, "/api/ai_chat/request", native))
        rows.append((delay, direct, "/v1/chat/completions", openai))
    fake.default_delay = 0.0
    return rows


def p4(base: str, token: str, seconds: int, rounds: int) -> tuple[dict, dict]:
    """/home and a bare Flask app, both served, measured in alternating rounds.

    64 connections: each keeps to the worker that accepted it, and with few connections one
    worker often gets most of them and the run measures one core instead of two.
    """
    with served("bench.bare_app:app") as bare_base:
        return alternating(
            rounds,
            lambda: wrk(
                base + "/api/ai_chat/home",
                "home.lua",
                {"TOKEN": token},
                connections=64,
                seconds=seconds,
            ),
            lambda: wrk(bare_base + "/", "get.lua", {}, connections=64, seconds=seconds),
        )


def p5(base: str, samples: int) -> tuple[float, float]:
    from werkzeug.security import check_password_hash, generate_password_hash

    method = os.environ.get("PASSWORD_HASH_METHOD", "scrypt:131072:8:1")
    hashed = generate_password_hash(PASSWORD, method=method)
    verify = []
    for _ in range(samples):
        started = time.perf_counter()
        check_password_hash(hashed, PASSWORD)
        verify.append(time.perf_counter() - started)
    login = []
    form = {"username": "bench@example.com", "password": PASSWORD}
    with requests.Session() as http:
        for _ in range(samples):
            started = time.perf_counter()
            assert http.post(base + "/api/auth/login", data=form, timeout=30).ok
            login.append(time.perf_counter() - started)
    return statistics.median(verify) * 1000, statistics.median(login) * 1000


def worker_rss(master_pid: int) -> dict[int, int]:
    """Resident memory (KiB) of each worker of the gunicorn master."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    sizes = {}
    for pid in children:
        status = Path(f"/proc/{pid}/status").read_text()
        sizes[int(pid)] = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    return sizes


def p6(base: str, token: str, master_pid: int, total: int = 10_000) -> tuple[dict, dict]:
    headers = {"Authorization": f"Bearer {token}"}
    calls = [
        ("get", "/api/ai_chat/home", None),
        # Newest first: by activity, the one session this mix writes to (thousands of
        # messages by the end) would top every page, and P6 would measure its growing size.
        ("get", "/api/ai_chat/history?page_size=10&order=created", None),
        ("get", "/api/ai_chat/sessions?page_size=20", None),
        (
            "post",
            "/api/ai_chat/request",
            {"content": "memory check", "model": "echo", "session_id": 7},
        ),
        ("get", "/api/user/", None),
    ]
    done, lock, marks = [0], threading.Lock(), {}

    def client(n):
        with requests.Session() as http:
            while True:
                with lock:
                    if done[0] >= total:
                        return
                    done[0] += 1
                    count = done[0]
                    if count == total // 2:
                        marks["half"] = worker_rss(master_pid)
                method, path, body = calls[count % len(calls)]
                response = getattr(http, method)(
                    base + path, headers=headers, json=body, timeout=30
                )
                assert response.status_code == 200, response.text

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return marks["half"], worker_rss(master_pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per comparison")
    args = parser.parse_args()

    fake = FakeProvider()
    settings = {
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": fake.url + "/v1",
        "PASSWORD_HASH_METHOD": "scrypt:131072:8:1",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "128",
        "CHAT_RATE_LIMIT": "100000000/minute",  # throughput, not a limit, is measured
    }
    with tempfile.TemporaryDirectory() as folder, gunicorn(Path(folder), settings) as (base, _):
        master = int(
            subprocess.run(
                ["pgrep", "-f", f"gunicorn.*{base.rsplit(':', 1)[1]}"],
                capture_output=True,
                text=True,
            ).stdout.split()[0]
        )
        token = register(base)
        p1_rows = p1(base, fake, token, args.seconds, args.rounds)
        home, bare = p4(base, token, args.seconds, args.rounds)
        verify_ms, login_ms = p5(base, 10)
        half, end = p6(base, token, master)
    fake.close()

    print("P1 — latency added to a chat turn (8 concurrent clients), ms; requests/s")
    print(
        "| provider latency | endpoint | direct median / p99 | through PolyGenix median / p99 "
        "| added median / p99 | req/s through | errors |"
    )
    print("|---|---|---|---|---|---|---|")
    for delay, direct, endpoint, through in p1_rows:
        print(
            f"| {delay * 1000:.0f} ms | `{endpoint}` | {direct['p50']:.2f} / {direct['p99']:.2f} "
            f"| {through['p50']:.2f} / {through['p99']:.2f} "
            f"| {through['p50'] - direct['p50']:.2f} / {through['p99'] - direct['p99']:.2f} "
            f"| {through['rps']:.0f} | {through['errors']} |"
        )
    print()
    print(f"(medians of {args.rounds} alternating rounds of {args.seconds} s)")
    print()
    print(
        f"P4 — GET /api/ai_chat/home {home['rps']:.0f} req/s "
        f"[{home['rps_range'][0]:.0f}–{home['rps_range'][1]:.0f}], bare Flask {bare['rps']:.0f} "
        f"req/s [{bare['rps_range'][0]:.0f}–{bare['rps_range'][1]:.0f}]: "
        f"{home['rps'] / bare['rps']:.0%} (errors {home['errors']}; medians of {args.rounds} "
        "alternating rounds, 64 connections)"
    )
    print(
        f"P5 — login {login_ms:.1f} ms, one password verification {verify_ms:.1f} ms: "
        f"{login_ms / verify_ms:.2f}x"
    )
    for pid in end:
        grew = (end[pid] - half.get(pid, end[pid])) / half.get(pid, end[pid])
        print(
            f"P6 — worker {pid}: {end[pid] / 1024:.1f} MiB after 10,000 requests, "
            f"{grew:+.1%} over the last 5,000"
        )


if __name__ == "__main__":
    main()
