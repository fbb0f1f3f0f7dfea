"""Background jobs (polygenix/jobs) in one process: recorded in the database, claimed once
however many workers and hosts race for them, retried with backoff, taken over when their worker
dies or stops, periodic jobs enqueued once per period, and visible in `polygenix jobs` and
the metrics. tests/test_deploy.py runs them under real gunicorn."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from polygenix.extensions import db
from polygenix.jobs import JobError, enqueue, register, store
from polygenix.jobs.models import FAILED, RUNNING, WAITING, Job, JobSchedule
from polygenix.jobs.runner import start
from polygenix.models import ChatSession, Message
from tests.helpers import TEST_DATABASE_URL, FakeClock, ask, counted_statements, wait_for
from tests.tcp_proxy import PASS, RESET, SILENT

QUICK = {"JOBS_POLL_SECONDS": 0.02}


def jobs_in(app, *kinds: str) -> list[Job]:
    """The jobs of `kinds` (the periodic sweep comes and goes meanwhile)."""
    with app.app_context():
        rows = db.session.scalars(select(Job).where(Job.kind.in_(kinds)).order_by(Job.id)).all()
        db.session.commit()
        return rows


def attempts(kind: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("polygenix_jobs_total", {"kind": kind, "outcome": outcome}) or 0
    )


def at(clock: FakeClock) -> datetime:
    return datetime.fromtimestamp(clock.now, UTC)


@pytest.fixture
def runners():
    """Start runners for apps; every one is stopped after the test."""
    started = []

    def run(app):
        started.append(start(app))
        return started[-1]

    yield run
    for runner in started:
        runner.stop()


def test_a_failing_job_is_retried_with_backoff_then_failed_and_listed(make_app, runners):
    clock = FakeClock()
    settings = {"CLOCK": clock, "JOBS_RETRY_SECONDS": 10, "JOBS_MAX_ATTEMPTS": 3}
    app = make_app(QUICK | settings)
    calls = []

    def flaky(payload):
        calls.append(payload)
        raise JobError("the service said no")

    register(app, "flaky", flaky)
    retried, failed = attempts("flaky", "retried"), attempts("flaky", "failed")
    with app.app_context():
        enqueue("flaky", {"n": 1})
    runners(app)
    waits = []
    for attempt in (1, 2):
        [job] = wait_for(
            lambda n=attempt: [
                j for j in jobs_in(app, "flaky") if j.attempts == n and j.state == WAITING
            ],
            what=f"attempt {attempt} to fail",
        )
        waits.append((job.run_at - at(clock)).total_seconds())
        assert len(calls) == attempt  # nothing more while the clock stands still
        clock.advance(waits[-1] + 0.001)
    [job] = wait_for(
        lambda: [j for j in jobs_in(app, "flaky") if j.state == FAILED], what="the failure"
    )
    # Doubling from JOBS_RETRY_SECONDS, less up to a quarter at random.
    assert 7.5 <= waits[0] <= 10 and 15 <= waits[1] <= 20
    assert calls == [{"n": 1}] * 3 and (job.attempts, job.max_attempts) == (3, 3)
    assert job.last_error == "the service said no"
    assert attempts("flaky", "retried") - retried == 2
    assert attempts("flaky", "failed") - failed == 1
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["jobs"])
    assert listed.exit_code == 0
    [row] = [line for line in listed.output.splitlines() if " flaky " in line]
    assert row.split()[:4] == [str(job.id), "flaky", "failed", "3/3"]
    assert row.endswith("the service said no")
    # An operator retries it: its attempts count afresh, and this time it works.
    calls.clear()
    register(app, "flaky", calls.append)
    retried = runner.invoke(args=["jobs", "retry", "--all-failed"])
    assert "1 failed job will be tried again" in retried.output
    wait_for(lambda: not jobs_in(app, "flaky"), what="the retried job")
    assert calls == [{"n": 1}]


def test_jobs_cli_deletes_failed_jobs_and_lists_as_json(make_app):
    app = make_app()
    register(app, "doomed", lambda payload: None)
    with app.app_context():
        first, second = enqueue("doomed", {}), enqueue("doomed", {})
        db.session.execute(Job.__table__.update().where(Job.id == first).values(state=FAILED))
        db.session.commit()
    runner = app.test_cli_runner()
    listed = json.loads(runner.invoke(args=["jobs", "list", "--json"]).output)
    assert sorted((j["id"], j["state"]) for j in listed) == [(first, FAILED), (second, WAITING)]
    assert runner.invoke(args=["jobs", "retry"]).exit_code != 0  # ids or --all-failed
    assert "Deleted 1 job" in runner.invoke(args=["jobs", "delete", "--all-failed"]).output
    assert [j.id for j in jobs_in(app, "doomed")] == [second]


def test_two_hosts_racing_claim_every_job_exactly_once(make_app):
    hosts = [make_app(), make_app()]
    for app in hosts:
        register(app, "work", lambda payload: None)
    with hosts[0].app_context():
        for n in range(120):
            enqueue("work", {"n": n})
    claimed: list[int] = []
    lock = threading.Lock()

    def claim_until_none(app, worker):
        with app.app_context():
            while batch := store.claim(["work"], worker, 3, timedelta(minutes=5)):
                with lock:
                    claimed.extend(job.id for job in batch)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(claim_until_none, [hosts[n % 2] for n in range(8)], map(str, range(8))))
    assert len(claimed) == 120 and len(set(claimed)) == 120
    assert {j.state for j in jobs_in(hosts[0], "work")} == {RUNNING}


def test_a_period_is_enqueued_once_however_many_schedulers_race(make_app):
    clock = FakeClock()
    hosts = [make_app({"CLOCK": clock}), make_app({"CLOCK": clock})]
    barrier = threading.Barrier(8)

    def schedule(app):
        with app.app_context():
            barrier.wait()
            return store.schedule_periodic({"tick": 60})

    for _period in range(3):
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(schedule, [hosts[n % 2] for n in range(8)]))
        assert sorted(map(len, results)) == [0] * 7 + [1]
        assert len(jobs_in(hosts[0], "tick")) == 1
        with hosts[0].app_context():
            db.session.execute(Job.__table__.delete())
            db.session.commit()
        clock.advance(60)
    with hosts[0].app_context():
        assert db.session.scalar(select(func.count()).select_from(JobSchedule)) == 1


def test_a_period_whose_run_still_waits_enqueues_no_other(make_app):
    clock = FakeClock()
    app = make_app({"CLOCK": clock})
    with app.app_context():
        assert store.schedule_periodic({"tick": 60}) == ["tick"]
        clock.advance(60)
        assert store.schedule_periodic({"tick": 60}) == []
    assert len(jobs_in(app, "tick")) == 1


def test_a_periodic_job_that_keeps_failing_lists_its_latest_failure_only(make_app, runners):
    clock = FakeClock()
    app = make_app(QUICK | {"CLOCK": clock})
    runs = []

    def broken(payload):
        runs.append(payload)
        raise JobError("broken")

    register(app, "tick", broken, every=60)
    runners(app)
    for period in range(1, 4):
        wait_for(lambda n=period: len(runs) == n, what=f"period {period}")
        clock.advance(60)
    wait_for(lambda: [j.state for j in jobs_in(app, "tick")] == [FAILED], what="one failure")
    register(app, "tick", runs.append, every=60)  # it works again: its failure is over
    clock.advance(60)
    wait_for(lambda: not jobs_in(app, "tick"), what="the failure cleared")


def test_a_job_whose_worker_died_is_taken_over_once_its_lease_lapses(make_app, runners):
    clock = FakeClock()
    app = make_app(QUICK | {"CLOCK": clock, "JOBS_LEASE_SECONDS": 30})
    done = []
    register(app, "work", done.append)
    register(app, "last", done.append, max_attempts=1)
    with app.app_context():
        enqueue("work", {"n": 1})
        enqueue("last", {"n": 2})
        # A worker claims both, then dies (kill -9): nothing renews or finishes them.
        assert len(store.claim(["work", "last"], "dead-host:1:x", 5, timedelta(seconds=30))) == 2
    runners(app)
    clock.advance(31)
    wait_for(lambda: len(jobs_in(app, "work", "last")) == 1, what="the job taken over")
    assert done == [{"n": 1}]
    [last] = jobs_in(app, "work", "last")
    # It was on its last attempt: failed, not run a second time.
    assert (last.kind, last.state, last.last_error) == ("last", FAILED, store.STOPPED)


def test_a_stopping_worker_hands_its_jobs_back_at_once(make_app, runners):
    app = make_app(QUICK)
    release, started, done = threading.Event(), threading.Event(), []

    def slow(payload):
        started.set()
        release.wait(10)
        done.append(payload)

    register(app, "slow", slow)
    with app.app_context():
        enqueue("slow", {"n": 1})
    first = runners(app)
    assert started.wait(5)
    first.stop()
    [job] = jobs_in(app, "slow")
    assert (job.state, job.attempts, job.claimed_by) == (WAITING, 0, None)
    release.set()  # the stopped worker's attempt ends: its row is no longer its own
    wait_for(lambda: done, what="the first attempt to end")
    [job] = jobs_in(app, "slow")
    assert job.state == WAITING
    runners(app)
    wait_for(lambda: not jobs_in(app, "slow"), what="another worker to do it")
    assert done == [{"n": 1}, {"n": 1}]


def test_the_sweep_of_dead_streams_is_a_periodic_job(make_app, auth, runners):
    clock = FakeClock()
    app = make_app(QUICK | {"CLOCK": clock, "STREAM_KEEPALIVE_SECONDS": 5})
    client = app.test_client()
    ada = auth.register(client=client)
    ask(client, ada, "question", session_id=1)
    with app.app_context():
        session = db.session.scalar(select(ChatSession).where(ChatSession.number == 1))
        question = db.session.scalar(
            select(Message).where(Message.session_id == session.id, ~Message.is_bot)
        )
        dead = Message(
            session_id=session.id,
            is_bot=True,
            content="half an ans",
            reply_to_id=question.id,
            lease_until=at(clock) + timedelta(seconds=20),
        )
        db.session.add(dead)
        db.session.commit()
        dead_id = dead.id
    runners(app)
    clock.advance(30)  # the lease lapses, and a period comes

    def flagged():
        with app.app_context():
            message = db.session.get(Message, dead_id)
            db.session.commit()
            return message.incomplete and message.lease_until is None

    wait_for(flagged, what="the sweep")


def test_no_request_runs_the_sweep(app, client, ada):
    with counted_statements(app) as statements:
        for n in range(3):
            assert ask(client, ada, f"question {n}").status_code == 200
        assert client.get("/api/ai_chat/history", headers=ada).status_code == 200
    assert statements and not [s for s in statements if "lease_until <" in s]
    assert not [s for s in statements if "job_schedules" in s]


def test_a_job_enqueued_by_a_request_wakes_its_process_runner(make_app, runners):
    app = make_app({"JOBS_POLL_SECONDS": 3600})  # it would never poll again by itself
    done = threading.Event()
    register(app, "ping", lambda payload: done.set())
    runners(app)
    with app.app_context():
        enqueue("ping", {})
    assert done.wait(10)


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="a TCP proxy in front of PostgreSQL")
def test_polling_survives_a_database_outage(make_app, database_proxy, runners, caplog):
    # A silent database is given up on after its statement and connect timeouts.
    quick_timeouts = {"DB_CONNECT_TIMEOUT": 1, "DB_STATEMENT_TIMEOUT": 2}
    proxied = make_app(QUICK | quick_timeouts | {"SQLALCHEMY_DATABASE_URI": database_proxy.url})
    direct = make_app()
    done = []
    for app in (proxied, direct):
        register(app, "note", done.append)
    runner = runners(proxied)
    for mode in (RESET, SILENT):
        database_proxy.set(mode)
        wait_for(lambda: runner.failing, timeout=60, what=f"a failed poll ({mode})")
        with direct.app_context():
            enqueue("note", {"mode": mode})
        database_proxy.set(PASS)
        wait_for(lambda m=mode: {"mode": m} in done, timeout=60, what="the job after the outage")
        wait_for(lambda: not runner.failing, what="the poll to succeed again")
    assert done == [{"mode": RESET}, {"mode": SILENT}]
    assert "background jobs: the database answers again" in caplog.text
