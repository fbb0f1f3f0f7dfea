"""The connection pool: threads waiting for a connection are served in the order they came,
one that waited DB_POOL_TIMEOUT gives up (a 503), and nothing else of QueuePool changes."""

import threading
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from polygenix.database import engine_options
from polygenix.extensions import db
from polygenix.pool import FairQueue, FairQueuePool
from tests.helpers import wait_for

ONE = {"pool_size": 1, "max_overflow": 0}


@pytest.fixture
def one_connection(app):
    """An engine as the app builds it, over the test database, with one pooled connection."""
    engines = []

    def make(timeout=10.0):
        options = engine_options(app.config) | ONE | {"pool_timeout": timeout}
        engines.append(create_engine(app.config["SQLALCHEMY_DATABASE_URI"], **options))
        return engines[-1]

    yield make
    for engine in engines:
        engine.dispose()


def queued(engine) -> int:
    with engine.pool._pool.mutex:
        return len(engine.pool._pool.waiters)


def test_the_apps_engine_uses_the_fair_pool(app):
    with app.app_context():
        assert isinstance(db.engine.pool, FairQueuePool)
        assert db.engine.pool._pool.use_lifo


def test_waiting_threads_get_the_connection_in_the_order_they_came(one_connection):
    """Each thread, once served, gives the connection back and asks again at once: it queues
    behind the others rather than taking back the connection it just gave (QueuePool let it)."""
    engine = one_connection()
    served, lock = [], threading.Lock()

    def waiter(n):
        for _ in range(2):
            with engine.connect() as connection:
                assert connection.execute(text("SELECT 1")).scalar() == 1
                with lock:
                    served.append(n)

    held = engine.connect()
    threads = []
    for n in range(6):
        threads.append(threading.Thread(target=waiter, args=(n,)))
        threads[-1].start()
        wait_for(lambda n=n: queued(engine) == n + 1)
    held.close()
    for t in threads:
        t.join(timeout=30)
    assert served == [*range(6), *range(6)]
    assert engine.pool.checkedin() == 1 and queued(engine) == 0


def test_a_newcomer_queues_behind_those_already_waiting(one_connection):
    engine = one_connection(timeout=1.0)
    served = []
    held = engine.connect()
    first = threading.Thread(target=lambda: served.append(engine.connect()))
    first.start()
    wait_for(lambda: queued(engine) == 1)
    held.close()  # handed to the waiter, even before it runs again
    assert engine.pool.checkedin() == 0
    with pytest.raises(PoolTimeout):
        engine.connect().close()  # the pool's one connection is the waiter's; the newcomer waits
    first.join(timeout=30)
    served[0].close()
    engine.connect().close()


def test_a_waiter_not_served_in_time_gives_up_and_leaves_the_line(one_connection):
    engine = one_connection(timeout=0.3)
    outcomes, lock = [], threading.Lock()

    def waiter(name):
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                outcome = "served"
        except PoolTimeout:
            outcome = "timed out"
        with lock:
            outcomes.append((name, outcome))

    held = engine.connect()
    late = threading.Thread(target=waiter, args=("late",))
    started = time.monotonic()
    late.start()
    late.join(timeout=30)
    assert outcomes == [("late", "timed out")]
    assert time.monotonic() - started >= 0.3
    assert queued(engine) == 0
    held.close()  # nobody waits: back among the idle, handed to whoever asks next
    assert engine.pool.checkedin() == 1
    waiter("next")
    assert outcomes[-1] == ("next", "served")


def test_a_connection_handed_to_a_waiter_as_its_time_ran_out_is_its_own():
    """The waiter's wait ended (its timeout), and before it could leave the line a connection
    came back and was handed to it: it takes that connection, none is lost."""
    line = FairQueue(maxsize=1)
    got = []
    waiting = threading.Thread(target=lambda: got.append(line.get(True, 0.1)))
    waiting.start()
    wait_for(lambda: line.waiters, what="the waiter in line")
    with line.mutex:  # the waiter times out meanwhile, then waits for the mutex
        time.sleep(0.3)
        entry = object()
        line.put(entry, False)  # handed to the waiter still in line
    waiting.join(timeout=10)
    assert got == [entry]
    assert not line.waiters and line.empty()


def test_a_waiter_whose_timeout_no_lock_takes_leaves_the_line():
    line = FairQueue(maxsize=1)
    with pytest.raises(OverflowError):
        line.get(True, threading.TIMEOUT_MAX * 2)
    assert not line.waiters
    entry = object()
    line.put(entry, False)  # among the idle, not handed to a waiter that is gone
    assert line.get(False) is entry


def test_a_thread_that_waited_past_the_pool_timeout_is_answered_503(app, make_app, auth):
    options = engine_options(app.config) | ONE | {"pool_timeout": 0.3}
    app = make_app({"SQLALCHEMY_ENGINE_OPTIONS": options})
    client = app.test_client()
    ada = auth.register(client=client)
    with app.app_context():
        assert isinstance(db.engine.pool, FairQueuePool)
        held = db.engine.connect()  # the pool's only connection, checked out
        try:
            response = client.get("/api/ai_chat/history", headers=ada)
            assert response.status_code == 503
            assert response.json["message"] == "Database unavailable"
            assert response.headers["Retry-After"] == "1"
        finally:
            held.close()
    assert client.get("/api/ai_chat/history", headers=ada).status_code == 200


def test_the_pool_keeps_its_size_and_overflow(one_connection):
    engine = one_connection(timeout=0.3)
    engine.pool._max_overflow = 1  # one more connection under load, closed when given back
    first, second = engine.connect(), engine.connect()
    with pytest.raises(PoolTimeout):
        engine.connect()
    kept = second.connection.dbapi_connection
    second.close()  # kept: the pool had room
    first.close()  # closed: the pool keeps one
    assert engine.pool.checkedin() == 1 and engine.pool.overflow() == 0
    with engine.connect() as again:
        assert again.connection.dbapi_connection is kept


def test_many_threads_taking_turns_all_get_a_connection(one_connection):
    """Connections given back as threads start waiting: none is left idle while one waits."""
    engine = one_connection(timeout=10.0)
    failures, lock = [], threading.Lock()

    def turns():
        for _ in range(100):
            try:
                engine.connect().close()
            except PoolTimeout as e:
                with lock:
                    failures.append(e)

    threads = [threading.Thread(target=turns) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert failures == []
    assert engine.pool.checkedin() == 1 and queued(engine) == 0
