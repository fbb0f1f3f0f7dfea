"""Titles by TITLE_MODEL: asked of the fake provider server by a background job, once a new
session's first reply is stored."""

import logging
import threading

import pytest
from sqlalchemy import select

from config import ConfigError
from polygenix import create_app
from polygenix.chat import titles
from polygenix.chat.turn import make_title
from polygenix.extensions import db
from polygenix.jobs.models import FAILED, Job
from polygenix.jobs.runner import start
from tests.fake_provider import openai_answer
from tests.helpers import TITLE_MODEL, ask, read_events, stream, wait_for

QUESTION = "Could you please explain how quantum computers differ from the classical ones we use?"
FIRST_TITLE = "Could you please explain how quantum computers differ from…"
# Jobs polled and retried at once: these tests wait for titles, never for a poll.
QUICK_JOBS = {"JOBS_POLL_SECONDS": 0.02, "JOBS_RETRY_SECONDS": 0.02}


@pytest.fixture
def titled(make_app, provider_config):
    """Make an app with TITLE_MODEL (and `settings`) whose jobs run on a runner of its own."""
    runners = []

    def make(settings=None):
        app = make_app(
            provider_config | {"TITLE_MODEL": TITLE_MODEL} | QUICK_JOBS | (settings or {})
        )
        runners.append(start(app))
        return app

    yield make
    # No title job may outlive its test (its database is emptied next).
    for runner in runners:
        settle(runner.app)
        runner.stop()


@pytest.fixture
def app(titled):
    return titled()


def jobs_of(app):
    with app.app_context():
        jobs = db.session.scalars(select(Job)).all()
        db.session.commit()
        return jobs


def settle(app):
    wait_for(
        lambda: all(job.state == FAILED for job in jobs_of(app)),
        timeout=10,
        what="title jobs to end",
    )


def answer(text):
    """The title model's reply, in OpenAI's format."""
    body = openai_answer({"model": "llama-3.1-8b-instant"})
    body["choices"][0]["message"]["content"] = text
    return body


def title_of(client, headers, number=1):
    return client.get(f"/api/ai_chat/{number}", headers=headers).json["title"]


def logged_by_titles(caplog):
    return [r for r in caplog.records if r.name == titles.log.name]


def title_calls(fake):
    return [r for r in fake.requests if (r.body or {}).get("model") == "llama-3.1-8b-instant"]


def test_the_reply_does_not_wait_for_the_title(app, client, ada, fake):
    release = threading.Event()
    fake.reply(body=answer("Quantum vs classical computers"), hold=release)
    reply = ask(client, ada, QUESTION)
    assert reply.status_code == 200
    history = client.get("/api/ai_chat/history", headers=ada)
    assert history.json[0]["title"] == FIRST_TITLE
    wait_for(lambda: title_calls(fake), what="the title call")
    assert title_of(client, ada) == FIRST_TITLE  # the call is held: the first title stays
    release.set()
    wait_for(lambda: title_of(client, ada) == "Quantum vs classical computers", what="the title")
    again = client.get(
        "/api/ai_chat/history", headers=ada | {"If-None-Match": history.headers["ETag"]}
    )
    assert again.status_code == 200  # the history's ETag changed with the title
    (call,) = title_calls(fake)
    assert call.path == "/openai/v1/chat/completions"
    assert call.body["max_completion_tokens"] == titles.TITLE_MAX_TOKENS
    conversation = call.body["messages"][-1]["content"]
    assert QUESTION in conversation and f"Echo: {QUESTION}" in conversation


def test_a_rename_meanwhile_is_kept(app, client, ada, fake):
    release = threading.Event()
    fake.reply(body=answer("Quantum computing"), hold=release)
    ask(client, ada, QUESTION)
    assert client.patch("/api/ai_chat/1", headers=ada, json={"title": "Mine"}).status_code == 200
    release.set()
    settle(app)
    assert title_calls(fake) and title_of(client, ada) == "Mine"


def test_a_session_deleted_meanwhile_is_not_an_error(app, client, ada, fake, caplog):
    release = threading.Event()
    fake.reply(body=answer("Quantum computing"), hold=release)
    ask(client, ada, QUESTION)
    assert client.delete("/api/ai_chat/1", headers=ada).status_code == 200
    release.set()
    settle(app)
    assert not logged_by_titles(caplog)


@pytest.mark.parametrize(
    ("reply", "logged"),
    [
        ({"status": 400, "body": {"error": {"message": "bad request"}}}, "failed (502)"),
        ({"body": answer("")}, "failed (502)"),  # an empty reply
        ({"delay": 1.0}, "failed (504)"),  # later than PROVIDER_TIMEOUT
        ({"body": answer('"**"\nsecond line')}, "gave none"),
    ],
)
def test_a_failed_title_leaves_the_first_one_and_is_logged(
    titled, auth, fake, caplog, reply, logged
):
    app = titled({"PROVIDER_TIMEOUT": 0.3, "JOBS_MAX_ATTEMPTS": 1})
    client = app.test_client()
    ada = auth.register(client=client)
    fake.reply(**reply)
    ask(client, ada, QUESTION)
    settle(app)
    assert title_of(client, ada) == FIRST_TITLE
    (record,) = logged_by_titles(caplog)
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(f"no title for session 1: {TITLE_MODEL} ")
    assert logged in record.getMessage()
    assert "quantum" not in caplog.text.lower() and "test-key" not in caplog.text


def test_a_continued_session_is_not_titled_again(app, client, ada, fake):
    ask(client, ada, QUESTION)
    settle(app)
    ask(client, ada, "And what about qubits?", session_id=1)
    ask(client, ada, "Another new session")
    settle(app)
    assert len(title_calls(fake)) == 2
    assert title_of(client, ada) == "Hello from llama-3.1-8b-instant"


def test_a_streamed_turn_is_titled_too(app, client, ada, fake):
    response = stream(client, ada, "groq", QUESTION)
    assert read_events(response.get_data(as_text=True))[-1][0] == "done"
    settle(app)
    assert len(title_calls(fake)) == 1
    assert title_of(client, ada) == "Hello from llama-3.1-8b-instant"


def test_a_stream_that_fails_is_not_titled(app, client, ada, fake):
    fake.reply(status=400, body={"error": {"message": "no"}})
    stream(client, ada, "groq", QUESTION)
    settle(app)
    assert not title_calls(fake) and title_of(client, ada) == FIRST_TITLE


def test_an_openai_client_s_new_session_is_titled(app, client, ada, fake):
    messages = [{"role": "user", "content": QUESTION}]
    response = client.post(
        "/v1/chat/completions", headers=ada, json={"model": "echo", "messages": messages}
    )
    assert response.status_code == 200
    settle(app)
    number = int(response.headers["X-PolyGenix-Session"])
    assert title_of(client, ada, number) == "Hello from llama-3.1-8b-instant"


def test_a_bug_in_a_title_job_is_retried_then_failed_and_listed(
    app, client, ada, fake, monkeypatch, caplog
):
    def broken(answer):
        raise RuntimeError(QUESTION)

    monkeypatch.setattr(titles, "clean", broken)
    ask(client, ada, QUESTION)
    settle(app)
    assert title_of(client, ada) == FIRST_TITLE
    assert len(title_calls(fake)) == 5  # JOBS_MAX_ATTEMPTS
    assert "(title) failed, attempt 1 of 5: RuntimeError; it will be tried again" in caplog.text
    assert "(title) failed, attempt 5 of 5: RuntimeError" in caplog.text
    assert "quantum" not in caplog.text.lower()
    listed = app.test_cli_runner().invoke(args=["jobs", "list", "--failed"])
    assert listed.exit_code == 0
    [row] = [line.split() for line in listed.output.splitlines()[1:]]
    assert row[1:4] == ["title", "failed", "5/5"] and row[-1] == "RuntimeError"
    assert "quantum" not in listed.output.lower()


def test_a_title_the_provider_fails_now_comes_with_a_retry(titled, auth, fake, caplog):
    app = titled({"PROVIDER_MAX_RETRIES": 0})
    client = app.test_client()
    ada = auth.register(client=client)
    fake.reply(status=503, body={"error": {"message": "overloaded"}})
    fake.reply(body=answer("Quantum vs classical computers"))
    ask(client, ada, QUESTION)
    wait_for(lambda: title_of(client, ada) == "Quantum vs classical computers", what="the title")
    assert len(title_calls(fake)) == 2
    assert f"no title for session 1: {TITLE_MODEL} failed (502)" in caplog.text
    wait_for(lambda: not jobs_of(app), what="the job to be done")  # deleted once done


def test_without_title_model_no_title_is_asked(provider_app, auth, fake):
    client = provider_app.test_client()
    ask(client, auth.register(client=client), QUESTION)
    assert titles.EXTENSION not in provider_app.extensions and not title_calls(fake)
    assert not jobs_of(provider_app)


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"TITLE_MODEL": "nosuch/model"}, "TITLE_MODEL: Unknown model 'nosuch/model'"),
        ({"TITLE_MODEL": "groq/llama-3.1-8b-instant"}, "GROQ_API_KEY"),
        ({"TITLE_MODEL": "openai-compatible"}, "OPENAI_COMPATIBLE_BASE_URL"),
    ],
)
def test_a_title_model_that_cannot_be_used_stops_the_app(config, settings, says):
    with pytest.raises(ConfigError, match=says):
        create_app(config | settings)


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ("Quantum computing basics", "Quantum computing basics"),
        ('"Quantum computing basics."', "Quantum computing basics"),
        ("Title: Quantum computing basics", "Quantum computing basics"),
        ('**Title:** "Quantum basics"', "Quantum basics"),
        ("# Quantum basics\n\nThis title fits because...", "Quantum basics"),
        ("\n\n  “Les ordinateurs quantiques”  \n", "Les ordinateurs quantiques"),
        ("`snake_case` naming in Python", "snake_case naming in Python"),
        ("word " * 30, make_title("word " * 30)),
        ("", ""),
        ('"…"', ""),
    ],
)
def test_a_model_s_answer_is_cleaned_to_one_short_line(answer, title):
    assert titles.clean(answer) == title
