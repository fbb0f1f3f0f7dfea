"""PolyGenix under real gunicorn (the project's gunicorn.conf.py), on a migrated database."""

import os
import socket
import subprocess
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

import requests

from tests.helpers import (
    PASSWORD,
    REDIS_TEST_PREFIX,
    ROOT,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    bearer,
    scratch_schema,
    wait_for,
)

# The gunicorn master of each base URL being served.
MASTERS: dict[str, subprocess.Popen] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _database(folder: Path):
    if TEST_DATABASE_URL:
        with scratch_schema("gunicorn") as url:
            yield url
    else:
        yield f"sqlite:///{folder / 'served.db'}"


def environment(folder: Path, url: str, settings: dict[str, str] | None = None) -> dict[str, str]:
    """The environment `gunicorn` serves PolyGenix with: another server started with it is
    another host of the same deployment."""
    env = (
        os.environ
        | {
            "DATABASE_URL": url,
            "POLYGENIX_INSTANCE_PATH": str(folder / "instance"),
            "SECRET_KEY": "s" * 48,
            "JWT_SECRET_KEY": "j" * 64,
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
            "CHAT_RATE_LIMIT": "10000/minute",
            "LOGIN_RATE_LIMIT": "10000/minute",
            "REDIS_KEY_PREFIX": REDIS_TEST_PREFIX,
            "WEB_CONCURRENCY": "2",
            "GUNICORN_THREADS": "16",
        }
        | (settings or {})
    )
    if TEST_REDIS_URL:
        env["REDIS_URL"] = TEST_REDIS_URL
    return env


@contextmanager
def gunicorn(folder: Path, settings: dict[str, str] | None = None):
    """Yield (base URL, database URL) of PolyGenix served with two workers."""
    with _database(folder) as url:
        env = environment(folder, url, settings)
        flask = [sys.executable, "-m", "flask", "--app", "polygenix"]
        migrated = subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, capture_output=True)
        assert migrated.returncode == 0, migrated.stderr.decode()[-2000:]
        with served("wsgi:app", env, "/readyz") as base:
            yield base, url


@contextmanager
def served(app: str, env: dict[str, str] | None = None, ready_path: str = "/"):
    """Yield the base URL of `app` under the project's gunicorn.conf.py, once it answers 200."""
    port = free_port()
    # GUNICORN_TEST_LOG: a file the servers' own log is added to (for a failing test).
    log = os.environ.get("GUNICORN_TEST_LOG")
    with open(log, "ab") if log else nullcontext(subprocess.DEVNULL) as stderr:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
                app,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    base = f"http://127.0.0.1:{port}"
    MASTERS[base] = server

    def ready():
        try:
            return requests.get(base + ready_path, timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(ready, timeout=20, what=f"gunicorn serving {app} to be ready", interval=0.1)
        yield base
    finally:
        MASTERS.pop(base, None)
        server.terminate()
        server.wait(timeout=10)


def register_over_http(
    base: str, email: str = "ada@example.com", name: str = "Ada", password: str = PASSWORD
) -> dict[str, str]:
    """Register a user with the PolyGenix at `base` (over real HTTP); its bearer headers."""
    response = requests.post(
        base + "/api/auth/register",
        json={"name": name, "email": email, "password": password},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return bearer(response.json()["access_token"])


def workers(base: str) -> list[int]:
    """The process ids of the gunicorn workers serving `base`."""
    master = MASTERS[base].pid
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:  # the parent's pid
            pids.append(int(stat.parent.name))
    return pids
