"""Deploying PolyGenix as an operator would: the wheel built from the repository, installed into a
fresh virtual environment and run from another folder with the `polygenix` command; a database
not yet migrated; background jobs across a kill -9 and across two hosts."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from contextlib import nullcontext
from pathlib import Path

import pytest
import requests
from alembic.script import ScriptDirectory
from click.testing import CliRunner

from polygenix import create_app, schema
from polygenix.command import cli
from polygenix.extensions import db
from tests.fake_provider import openai_answer
from tests.gunicorn_server import (
    MASTERS,
    environment,
    free_port,
    gunicorn,
    register_over_http,
    served,
    workers,
)
from tests.helpers import (
    PASSWORD,
    REDIS_TEST_PREFIX,
    ROOT,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    TITLE_MODEL,
    ask,
    assert_envelope,
    bearer,
    sample,
    scratch_schema,
    wait_for,
)

# What a wheel is built from: the files a clone has (nothing a checkout left lying around).
SOURCES = ("polygenix", "migrations", "setup.py", "setup.cfg", "pyproject.toml", "README.md")


def head() -> str:
    [revision] = schema._scripts().get_heads()
    return revision


# --- the wheel -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(source, folder / "source" / name, ignore=ignore)
        else:
            shutil.copy(source, folder / "source" / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", "dist", "./source"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [path] = (folder / "dist").glob("polygenix-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed (at the locked versions)."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet"]
        + ["--constraint", ROOT / "constraints.txt", wheel],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


@pytest.mark.slow
def test_the_wheel_holds_the_package_its_migrations_and_its_command(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert "polygenix" in top and all(t == "polygenix" or t.endswith(".dist-info") for t in top)
    assert len(top) == 2  # the package, its metadata: no config, wsgi, tests or migrations
    for name in ("env.py", "alembic.ini", "script.py.mako", "README"):
        assert f"polygenix/migrations/{name}" in names
    versions = {p.name for p in (ROOT / "migrations" / "versions").glob("*.py")}
    assert versions == {
        n.rsplit("/", 1)[1] for n in names if n.startswith("polygenix/migrations/versions/")
    }
    [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "polygenix = polygenix.command:main" in text


def operator_environment(venv: Path, **settings: str) -> dict[str, str]:
    """The environment of a shell with the virtual environment on its PATH: no checkout on the
    Python path, no setting but `settings`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k in ("HOME", "LANG", "LC_ALL", "TMPDIR") or k.startswith("PIP_")
    }
    env["PATH"] = f"{venv / 'bin'}:{os.environ['PATH']}"
    env["PASSWORD_HASH_METHOD"] = "pbkdf2:sha256:1000"
    if TEST_REDIS_URL:
        env |= {"REDIS_URL": TEST_REDIS_URL, "REDIS_KEY_PREFIX": REDIS_TEST_PREFIX}
    return env | settings


def polygenix(venv, folder, env, *args, stdin=None):
    return subprocess.run(
        [venv / "bin" / "polygenix", *args],
        cwd=folder,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_an_installed_wheel_deploys_from_any_folder(installed, tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    port = free_port()
    # Read from the working folder's .env: the address; the environment wins over its token.
    (folder / ".env").write_text(f"POLYGENIX_BIND=127.0.0.1:{port}\nMETRICS_TOKEN=from-dotenv\n")
    env = operator_environment(installed, METRICS_TOKEN="from-env")
    with scratch_schema("wheel") if TEST_DATABASE_URL else nullcontext() as url:
        if url:
            env["DATABASE_URL"] = url
        refused = polygenix(installed, folder, env, "serve")
        assert refused.returncode == 1
        assert "run `polygenix db upgrade`" in refused.stderr
        upgraded = polygenix(installed, folder, env, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr[-2000:]
        assert f"-> {head()}" in upgraded.stderr
        made = polygenix(
            installed,
            folder,
            env,
            *("users", "create", "--email", "root@example.com", "--name", "Root", "--admin"),
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
        assert made.returncode == 0 and "Created admin root@example.com" in made.stdout
        server = subprocess.Popen(
            [installed / "bin" / "polygenix", "serve"],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _ready(base), timeout=60, what="polygenix serve", interval=0.2)
            login = requests.post(
                base + "/api/auth/login",
                data={"username": "root@example.com", "password": PASSWORD},
                timeout=10,
            )
            headers = bearer(login.json()["access_token"])
            reply = requests.post(
                base + "/api/ai_chat/request",
                headers=headers,
                json={"content": "hello from a wheel", "model": "echo"},
                timeout=10,
            )
            assert reply.status_code == 200, reply.text
            assert reply.json()["content"] == "Echo: hello from a wheel"
            for token, status in (("from-env", 200), ("from-dotenv", 401)):
                metrics = requests.get(base + "/metrics", headers=bearer(token), timeout=10)
                assert metrics.status_code == status
            listed = polygenix(installed, folder, env, "jobs")
            assert listed.returncode == 0, listed.stderr
        finally:
            server.send_signal(signal.SIGTERM)
            _, stderr = server.communicate(timeout=60)
        # gunicorn with PolyGenix's settings: threaded workers, two of them.
        assert "Using worker: gthread" in stderr and stderr.count("Booting worker") >= 2
    if not TEST_DATABASE_URL:  # the documented default instance folder of an installed package
        assert (installed / "var" / "polygenix-instance" / "polygenix.db").is_file()
    for module in ("config", "wsgi"):
        imported = subprocess.run(
            [installed / "bin" / "python", "-c", f"import {module}"], cwd=folder, env=env
        )
        assert imported.returncode != 0, f"the wheel installed a top-level {module}"


def _ready(base: str) -> bool:
    try:
        return requests.get(base + "/readyz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


# --- a database not (or not fully) migrated ----------------------------------------------------


@pytest.fixture
def empty_database(tmp_path):
    if TEST_DATABASE_URL:
        with scratch_schema("unmigrated") as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'unmigrated.db'}"


@pytest.fixture
def unmigrated(config, empty_database):
    """An app over a database no migration has run on."""
    app = create_app(config | {"SQLALCHEMY_DATABASE_URI": empty_database})
    yield app
    with app.app_context():
        db.engine.dispose()


def test_an_unmigrated_database_is_a_500_that_says_what_to_run(unmigrated, auth, caplog):
    app = unmigrated
    client = app.test_client()
    body = {"name": "Ada", "email": "ada@example.com", "password": PASSWORD}
    response = client.post("/api/auth/register", json=body)
    assert_envelope(response, 500, "The database is not migrated: run `polygenix db upgrade`")
    assert "Retry-After" not in response.headers
    assert "The database is not migrated" in caplog.text
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    assert ask(client, auth.register(client=client), "now?").status_code == 200


def test_a_database_behind_the_code_says_what_to_run(unmigrated):
    app = unmigrated
    # 0008: before the columns 0009 adds to messages (reasoning, usage, options).
    assert app.test_cli_runner().invoke(args=["db", "upgrade", "0008"]).exit_code == 0
    client = app.test_client()
    response = client.post(
        "/api/auth/register",
        json={"name": "Ada", "email": "ada@example.com", "password": PASSWORD},
    )
    if response.status_code == 200:
        response = ask(client, bearer(response.json["access_token"]), "hello")
    assert_envelope(response, 500, "run `polygenix db upgrade`")


def test_serve_refuses_a_database_that_is_not_migrated_or_behind(
    unmigrated, empty_database, monkeypatch
):
    monkeypatch.setenv("DATABASE_URL", empty_database)
    monkeypatch.setenv("SECRET_KEY", "s" * 48)
    monkeypatch.setenv("JWT_SECRET_KEY", "j" * 64)
    runner = CliRunner()
    result = runner.invoke(cli, ["serve"])
    assert result.exit_code == 1
    assert "The database has no PolyGenix tables: run `polygenix db upgrade`" in result.output
    earlier = ScriptDirectory(str(schema.migrations_directory())).get_revision(head())
    upgrade = ["db", "upgrade", earlier.down_revision]
    assert unmigrated.test_cli_runner().invoke(args=upgrade).exit_code == 0
    result = runner.invoke(cli, ["serve"])
    assert result.exit_code == 1
    says = f"at revision {earlier.down_revision} and this PolyGenix needs {head()}"
    assert says in result.output and "run `polygenix db upgrade`" in result.output


def test_a_database_a_newer_version_migrated_passes(unmigrated):
    """A rolling upgrade: the new version migrated; hosts still on this one keep serving."""
    app = unmigrated
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    with app.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
        assert schema.problem(connection) is None
        connection.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{head()}'")
        assert schema.problem(connection) is None


# --- background jobs under real gunicorn --------------------------------------------------------


def _title_settings(fake) -> dict[str, str]:
    return {
        "TITLE_MODEL": TITLE_MODEL,
        "GROQ_API_KEY": "test-key-groq",
        "GROQ_BASE_URL": fake.url + "/openai/v1",
        "JOBS_POLL_SECONDS": "0.1",
        "JOBS_LEASE_SECONDS": "2",
    }


def _title(base, headers) -> str | None:
    try:
        response = requests.get(base + "/api/ai_chat/1", headers=headers, timeout=5)
    except requests.RequestException:
        return None
    return response.json()["title"] if response.status_code == 200 else None


@pytest.mark.slow
def test_a_title_asked_for_before_a_kill_9_is_written_after_the_next_start(tmp_path, fake):
    fake.reset()
    release = threading.Event()
    body = openai_answer({"model": "llama-3.1-8b-instant"})
    body["choices"][0]["message"]["content"] = "Never written"
    fake.reply(body=body, hold=release)  # the first title call: held, then the server is killed
    settings = _title_settings(fake)
    try:
        with gunicorn(tmp_path, settings) as (base, url):
            headers = register_over_http(base)
            reply = requests.post(
                base + "/api/ai_chat/request",
                headers=headers,
                json={"content": "Tell me about quantum computers", "model": "echo"},
                timeout=10,
            )
            assert reply.status_code == 200
            wait_for(lambda: _title_calls(fake), timeout=20, what="the title call")
            for pid in [*workers(base), MASTERS[base].pid]:
                os.kill(pid, signal.SIGKILL)
            MASTERS[base].wait(timeout=10)
            release.set()  # its answer goes to a dead socket
            first_title = "Tell me about quantum computers"
            env = environment(tmp_path, url, settings)
            with served("wsgi:app", env, "/readyz") as again:

                def retitled():
                    title = _title(again, headers)
                    return title if title not in (None, first_title) else None

                # The job's claim lapses (JOBS_LEASE_SECONDS) and a new worker takes it.
                title = wait_for(retitled, timeout=30, what="the new title", interval=0.2)
        assert title == "Hello from llama-3.1-8b-instant"
        assert len(_title_calls(fake)) == 2
    finally:
        release.set()


def _title_calls(fake):
    return [r for r in fake.requests if (r.body or {}).get("model") == "llama-3.1-8b-instant"]


def _sweeps(base: str) -> float:
    text = requests.get(base + "/metrics", timeout=5).text
    return sample(text, "polygenix_jobs_total", kind="sweep_dead_streams", outcome="done")


@pytest.mark.slow
def test_two_hosts_of_two_workers_run_a_periodic_job_once_per_period(tmp_path):
    period = 0.5
    settings = {"STREAM_KEEPALIVE_SECONDS": str(period), "JOBS_POLL_SECONDS": "0.05"}
    with gunicorn(tmp_path, settings) as (first, url):
        env = environment(tmp_path, url, settings)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each host counts its own
        with served("wsgi:app", env, "/readyz") as second:
            hosts = (first, second)
            wait_for(lambda: sum(map(_sweeps, hosts)) >= 2, timeout=30, what="sweeps")
            started = time.monotonic()
            before = sum(map(_sweeps, hosts))
            time.sleep(4)
            after = sum(map(_sweeps, hosts))
            elapsed = time.monotonic() - started
    # Four pollers: duplicates would run it up to four times a period. Once per period is at
    # most the periods in the window, plus one under way when it opened.
    assert 1 <= after - before <= elapsed / period + 2


@pytest.mark.slow
def test_a_polygenix_worker_process_runs_jobs_and_stops_on_sigterm(tmp_path, config):
    """JOBS_IN_WEB_WORKERS=false deployments: jobs run in `polygenix worker` processes."""
    with scratch_schema("worker") if TEST_DATABASE_URL else nullcontext() as url:
        env = environment(tmp_path, url or f"sqlite:///{tmp_path / 'worker.db'}")
        env |= {"STREAM_KEEPALIVE_SECONDS": "0.5", "JOBS_POLL_SECONDS": "0.05"}
        command = [Path(sys.executable).parent / "polygenix"]
        migrated = subprocess.run([*command, "db", "upgrade"], env=env, capture_output=True)
        assert migrated.returncode == 0, migrated.stderr[-2000:]
        app = create_app(config | {"SQLALCHEMY_DATABASE_URI": env["DATABASE_URL"]})
        worker = subprocess.Popen(
            [*command, "worker"], env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path
        )
        try:
            with app.app_context():
                from polygenix.jobs.models import JobSchedule

                def swept_twice():
                    db.session.commit()
                    first = db.session.get(JobSchedule, "sweep_dead_streams")
                    return first and first.due_at

                first = wait_for(swept_twice, timeout=30, what="the worker's first sweep")
                wait_for(lambda: swept_twice() != first, timeout=30, what="the next period")
        finally:
            worker.send_signal(signal.SIGTERM)
            _, stderr = worker.communicate(timeout=30)
            with app.app_context():
                db.engine.dispose()
    assert worker.returncode == 0
    assert "running jobs" in stderr
