"""PolyGenix beside LiteLLM's proxy: the same /v1/chat/completions body to the same fake model.

Servers, all on 127.0.0.1 and up together: PolyGenix under the project's gunicorn.conf.py (two
gthread workers) on a fresh SQLite file, on a scratch PostgreSQL schema (--postgres), and on
PostgreSQL with Redis (--redis); and LiteLLM's proxy (`litellm --config`, two workers, a master
key, no database: it stores nothing), installed on first use into a virtualenv under
~/.cache/polygenix-bench. LiteLLM is no dependency of PolyGenix. The fake model is
bench/upstream.py, in a process of its own; PolyGenix is called with an API key, as an SDK
would, and stores every call as a new conversation.

Measured in --rounds rounds, the servers taken in turn within each (the machine's drifts touch
them alike), medians reported:

- throughput: wrk, --connections connections for --seconds, the model answering at once;
- CPU per request: CPU time of the server's processes (and of its PostgreSQL backends, found
  by their application_name) during that run, divided by the requests answered;
- added latency: wrk, 8 connections, the model answering after 100 ms; its median less the
  median of the same calls sent to the fake model directly;
- memory: resident (RSS) and proportional (PSS, shared pages divided among the processes that
  share them) memory of the server's processes after the runs;
- concurrent streams (--streams): that many streamed calls at once, each read to its end
  within 20 s; the ones that failed.

    .venv/bin/python bench/litellm.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test \
        --redis redis://127.0.0.1:6379/0          # needs wrk (Debian: apt-get install wrk)
"""

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from polygenix.serving import settings as serve_settings  # noqa: E402
from tests.gunicorn_server import MASTERS, environment, served  # noqa: E402
from tests.helpers import scratch_schema  # noqa: E402

# 1.82.7 and 1.82.8 were published by an attacker (a compromised maintainer token): never those.
LITELLM_VERSION = "1.82.6"
COMPROMISED = {"1.82.7", "1.82.8"}
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "polygenix-bench"
WRK = ROOT / "bench" / "wrk" / "v1_model.lua"
FAST, SLOW = "fast", "slow-100ms"  # the fake model's names (see bench/upstream.py)
MASTER_KEY = "sk-litellm-bench"
TICK = os.sysconf("SC_CLK_TCK")


# --- processes ------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """`pid` and every process under it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def cpu_seconds(pids) -> dict[int, float]:
    """CPU time (user + system, with that of children waited for) of each process alive."""
    times = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        times[pid] = sum(int(f) for f in fields[11:15]) / TICK
    return times


def memory_kib(pids) -> tuple[int, int]:
    """Summed RSS and PSS (KiB) of these processes."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        rss += int(re.search(r"^Rss:\s+(\d+)", text, re.M).group(1))
        pss += int(re.search(r"^Pss:\s+(\d+)", text, re.M).group(1))
    return rss, pss


class CpuMeter:
    """CPU time used by a server's process tree, and by its PostgreSQL backends (sampled every
    0.2 s while it runs, so that a backend that ends meanwhile still counts up to its end)."""

    def __init__(self, server: "Server"):
        self.server = server
        self.app: dict[int, float] = {}
        self.db: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _pids(self):
        return descendants(self.server.pid), self.server.backends()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self._take()

    def _take(self) -> None:
        app, backends = self._pids()
        self.app.update(cpu_seconds(app))
        self.db.update(cpu_seconds(backends))

    def __enter__(self):
        self._take()
        self.start_app, self.start_db = dict(self.app), dict(self.db)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._take()
        self.app_seconds = sum(v - self.start_app.get(p, 0.0) for p, v in self.app.items())
        self.db_seconds = sum(v - self.start_db.get(p, 0.0) for p, v in self.db.items())


# --- the servers ----------------------------------------------------------------------------


class Server:
    name: str
    base: str
    key: str
    pid: int
    model_prefix = "openai/"
    application_name: str | None = None
    database: str | None = None  # a PostgreSQL URL to find the backends with

    def backends(self) -> list[int]:
        if self.application_name is None:
            return []
        import psycopg

        with psycopg.connect(self.database, autocommit=True) as connection:
            rows = connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                (self.application_name,),
            ).fetchall()
        return [row[0] for row in rows]


def postgres_plain(url: str) -> str:
    """A PostgreSQL URL as psycopg takes it (no SQLAlchemy driver name)."""
    from sqlalchemy import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def polygenix(
    kind: str, folder: Path, upstream: str, postgres: str | None, redis: str | None, users: int
):
    """PolyGenix under gunicorn: kind "SQLite", "PostgreSQL" or "PostgreSQL + Redis"."""
    server = Server()
    server.name = f"PolyGenix, {kind}"
    with ExitStack() as stack:
        if kind == "SQLite":
            url = f"sqlite:///{folder / 'bench.db'}"
        else:
            server.application_name = f"polygenix-bench-{os.getpid()}-{len(kind)}"
            url = stack.enter_context(scratch_schema("bench", postgres))
            url += f"&application_name={server.application_name}"
            server.database = postgres_plain(postgres)
        settings = {
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": upstream + "/v1",
            "CHAT_RATE_LIMIT": "100000000/minute",  # counted, never reached
            "WEB_CONCURRENCY": "2",
            # The threads of `polygenix serve` when none are set.
            "GUNICORN_THREADS": str(
                serve_settings({"PROMETHEUS_MULTIPROC_DIR": str(folder)})["threads"]
            ),
        }
        env = environment(folder, url, settings)
        env.pop("REDIS_URL", None)
        if kind.endswith("Redis"):
            env["REDIS_URL"] = redis
        flask = [sys.executable, "-m", "flask", "--app", "polygenix"]
        subprocess.run(
            [*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        server.base = stack.enter_context(served("wsgi:app", env, "/readyz"))
        server.pid = MASTERS[server.base].pid
        keys = []
        for n in range(users):
            token = requests.post(
                server.base + "/api/auth/register",
                json={
                    "name": "Bench",
                    "email": f"bench-{n}@example.com",
                    "password": "benchmark secret",
                },
                timeout=30,
            ).json()["access_token"]
            keys.append(
                requests.post(
                    server.base + "/api/keys",
                    json={"name": "bench"},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                ).json()["key"]
            )
        server.key = ",".join(keys)
        yield server


def litellm_command(version: str) -> Path:
    """The `litellm` command of `version`, installed with its proxy extra into a virtualenv
    under CACHE on first use."""
    if version in COMPROMISED:
        raise SystemExit(f"litellm {version} was compromised on PyPI: choose another version")
    venv = CACHE / f"litellm-{version}"
    command = venv / "bin" / "litellm"
    if not command.exists():
        print(f"Installing litellm[proxy]=={version} into {venv}...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", f"litellm[proxy]=={version}"],
            check=True,
        )
    return command


@contextmanager
def litellm(folder: Path, upstream: str, version: str):
    command = litellm_command(version)
    models = [
        {
            "model_name": f"openai/{name}",
            "litellm_params": {
                "model": f"openai/{name}",
                "api_base": upstream + "/v1",
                "api_key": "sk-bench",
            },
        }
        for name in (FAST, SLOW)
    ]
    config = folder / "litellm.json"  # JSON is YAML
    config.write_text(
        json.dumps(
            {
                "model_list": models,
                "general_settings": {"master_key": MASTER_KEY},
                "litellm_settings": {"telemetry": False},
            }
        )
    )
    from tests.gunicorn_server import free_port

    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS", "LITELLM"))
    } | {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download at start
        "LITELLM_LOG": "ERROR",
    }
    process = subprocess.Popen(
        [
            str(command),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "2",
        ],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "litellm.log", "wb"),  # noqa: SIM115
    )
    server = Server()
    server.name = f"LiteLLM {version}"
    server.base = f"http://127.0.0.1:{port}"
    server.key = MASTER_KEY
    server.pid = process.pid
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(server.base + "/health/liveliness", timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("LiteLLM did not start: " + (folder / "litellm.log").read_text())
            time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def fake_model(gap: float):
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "upstream.py"), "--gap", str(gap)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{process.stdout.readline().strip()}", process.pid
    finally:
        process.stdin.close()
        process.wait(timeout=10)


# --- the measures ---------------------------------------------------------------------------


def wrk(url: str, token: str, model: str, connections: int, seconds: int) -> dict:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(WRK),
            url + "/v1/chat/completions",
        ],
        env=os.environ | {"TOKEN": token, "MODEL": model},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    value, unit = re.search(r"\s50%\s+([\d.]+)(us|ms|s)\b", out).groups()
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit],
        "errors": (int(errors.group(1)) if errors else 0)
        + (sum(int(n) for n in sockets.groups()) if sockets else 0),
    }


def throughput(server: Server, connections: int, seconds: int) -> dict:
    with CpuMeter(server) as meter:
        result = wrk(server.base, server.key, server.model_prefix + FAST, connections, seconds)
    answered = max(result["requests"] - result["errors"], 1)
    return result | {
        "app_cpu_ms": meter.app_seconds * 1000 / answered,
        "db_cpu_ms": meter.db_seconds * 1000 / answered,
    }


def streams(server: Server, count: int) -> tuple[int, float]:
    """`count` streamed calls at once: how many failed (or missed 20 s), and the wall time; why
    each failed is printed to stderr (a status, an exception's class, late or cut)."""
    body = {
        "model": server.model_prefix + FAST,
        "messages": [{"role": "user", "content": "Hello there"}],
        "stream": True,
    }
    keys = server.key.split(",")
    failed, lock = collections.Counter(), threading.Lock()
    barrier = threading.Barrier(count)
    deadline = [0.0]

    def one(n):
        barrier.wait()
        try:
            with requests.post(
                server.base + "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {keys[n % len(keys)]}"},
                stream=True,
                timeout=20,
            ) as response:
                if not response.ok:
                    why = f"{response.status_code} {response.text[:120]}"
                else:
                    seen = b"".join(response.iter_content(chunk_size=None))
                    why = "cut" if b"[DONE]" not in seen else None
            if why is None and time.monotonic() > deadline[0]:
                why = "late"
        except Exception as e:
            why = type(e).__name__
        if why is not None:
            with lock:
                failed[why] += 1

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    started = time.monotonic()
    deadline[0] = started + 20
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    if failed:
        print(f"{server.name}, {count} streams failed: {dict(failed)}", file=sys.stderr)
    return sum(failed.values()), took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="PostgreSQL URL: also PolyGenix on PostgreSQL")
    parser.add_argument("--redis", help="Redis URL (with --postgres): also PostgreSQL + Redis")
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32, help="for the throughput runs")
    parser.add_argument("--streams", default="200", help="concurrent stream levels, or 0")
    parser.add_argument(
        "--users", type=int, default=1, help="PolyGenix users the requests are spread over"
    )
    parser.add_argument("--litellm-version", default=LITELLM_VERSION)
    parser.add_argument("--only", help="comma-separated server names to run (substrings)")
    args = parser.parse_args()

    kinds = ["SQLite"]
    if args.postgres:
        kinds.append("PostgreSQL")
        if args.redis:
            kinds.append("PostgreSQL + Redis")
    levels = [int(n) for n in args.streams.split(",") if int(n)]
    wanted = args.only.lower().split(",") if args.only else None
    if wanted is not None:  # the others are not even started
        kinds = [k for k in kinds if any(w in f"polygenix, {k}".lower() for w in wanted)]
    with ExitStack() as stack:
        upstream, _ = stack.enter_context(fake_model(gap=0.05))
        servers = [
            stack.enter_context(
                polygenix(
                    kind,
                    Path(stack.enter_context(tempfile.TemporaryDirectory())),
                    upstream,
                    args.postgres,
                    args.redis,
                    args.users,
                )
            )
            for kind in kinds
        ]
        if wanted is None or any(
            w in f"litellm {args.litellm_version}" for w in wanted
        ):  # else not even installed
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            servers.append(stack.enter_context(litellm(folder, upstream, args.litellm_version)))
        for server in servers:  # each answers the body, and warms up
            wrk(server.base, server.key, server.model_prefix + FAST, 4, 2)
        load = []
        runs: dict[str, dict[str, list]] = {s.name: {"fast": [], "slow": []} for s in servers}
        direct = []
        for _ in range(args.rounds):
            load.append(os.getloadavg()[0])
            direct.append(wrk(upstream, "none", SLOW, 8, args.seconds))
            for server in servers:
                runs[server.name]["fast"].append(throughput(server, args.connections, args.seconds))
                slow = wrk(server.base, server.key, server.model_prefix + SLOW, 8, args.seconds)
                runs[server.name]["slow"].append(slow)
        memory = {s.name: memory_kib(descendants(s.pid)) for s in servers}
        streamed = {s.name: [streams(s, level) for level in levels] for s in servers}
        load.append(os.getloadavg()[0])

    base = statistics.median(r["p50"] for r in direct)
    litellm_name = servers[-1].name if servers[-1].name.startswith("LiteLLM") else None
    print(
        f"PolyGenix's calls from {args.users} user(s); "
        f"{args.rounds} rounds; wrk {args.connections} connections × {args.seconds} s at 0 ms, "
        f"8 × {args.seconds} s at 100 ms; load average at each round's start: "
        + ", ".join(f"{x:.1f}" for x in load)
    )
    print(f"fake model directly, 100 ms: median {base:.2f} ms")
    print()
    print(
        "| server | req/s at 0 ms (range) | server CPU ms/request | PostgreSQL CPU ms/request "
        "| added median at 100 ms | RSS / PSS MiB | errors | "
        + " | ".join(f"{n} streams: failed, s" for n in levels)
        + " |"
    )
    print("|---|---|---|---|---|---|---|" + "---|" * len(levels))
    summary = {}
    for server in servers:
        fast, slow = runs[server.name]["fast"], runs[server.name]["slow"]
        rps = statistics.median(r["rps"] for r in fast)
        cpu = statistics.median(r["app_cpu_ms"] for r in fast)
        db_cpu = statistics.median(r["db_cpu_ms"] for r in fast)
        added = statistics.median(r["p50"] for r in slow) - base
        errors = sum(r["errors"] for r in fast + slow)
        rss, pss = memory[server.name]
        summary[server.name] = {"rps": rps, "cpu": cpu, "added": added}
        print(
            f"| {server.name} | {rps:.0f} ({min(r['rps'] for r in fast):.0f}–"
            f"{max(r['rps'] for r in fast):.0f}) | {cpu:.2f} | "
            f"{db_cpu:.2f} | {added:.2f} ms | {rss / 1024:.0f} / {pss / 1024:.0f} | {errors} | "
            + " | ".join(f"{f}, {s:.1f}" for f, s in streamed[server.name])
            + " |"
        )
    if litellm_name:
        them = summary[litellm_name]
        print()
        for name, ours in summary.items():
            if name == litellm_name:
                continue
            print(
                f"{name}: {ours['rps'] / them['rps']:.2f}× LiteLLM's throughput, "
                f"{ours['cpu'] / them['cpu']:.2f}× its CPU per request, "
                f"{ours['added'] / them['added']:.2f}× its added median latency"
            )


if __name__ == "__main__":
    main()
