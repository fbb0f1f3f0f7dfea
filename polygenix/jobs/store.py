"""The jobs table's operations: enqueue, claim, renew, finish, fail, give back, and the schedule of
periodic jobs. Each is one short transaction of its own.

A claim is atomic across workers and hosts: on PostgreSQL the due rows are locked with `FOR
UPDATE SKIP LOCKED` (two workers never wait on, nor take, the same row); on SQLite the claiming
UPDATE runs under the database's single write lock and re-checks, in its own WHERE, that the row
is still due. A claim is a lease: the worker renews it while the job runs, and a job whose
worker died (kill -9, a lost host) is claimed again once its lease lapses.
"""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .. import clock
from ..extensions import db
from .models import FAILED, RUNNING, WAITING, Job, JobSchedule

# The longest wait between two attempts of a job.
MAX_BACKOFF_SECONDS = 3600
STOPPED = "its worker stopped during its last attempt"


@dataclass(frozen=True)
class Claimed:
    id: int
    kind: str
    payload: dict
    attempts: int
    max_attempts: int


def enqueue(kind: str, payload: dict, max_attempts: int) -> int:
    """Record a job (committed); its id."""
    job = Job(
        kind=kind, payload=payload, max_attempts=max_attempts, state=WAITING, run_at=clock.now()
    )
    db.session.add(job)
    db.session.commit()
    return job.id


def next_due(kinds: list[str]) -> datetime | None:
    """When the earliest job of `kinds` is due (read only: an idle poll writes nothing)."""
    return db.session.scalar(
        select(func.min(Job.run_at)).where(Job.kind.in_(kinds), Job.state.in_((WAITING, RUNNING)))
    )


def claim(kinds: list[str], worker: str, count: int, lease: timedelta) -> list[Claimed]:
    """Up to `count` due jobs of `kinds`, now this worker's until `lease` from now."""
    now = clock.now()
    due = (Job.kind.in_(kinds), Job.state.in_((WAITING, RUNNING)), Job.run_at <= now)
    ids = select(Job.id).where(*due).order_by(Job.run_at, Job.id).limit(count)
    if db.session.get_bind().dialect.name == "postgresql":
        ids = ids.with_for_update(skip_locked=True)
    statement = (
        update(Job)
        .where(Job.id.in_(ids.scalar_subquery()), *due)
        .values(state=RUNNING, attempts=Job.attempts + 1, run_at=now + lease, claimed_by=worker)
        .returning(Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts)
        .execution_options(synchronize_session=False)
    )
    rows = db.session.execute(statement).all()
    db.session.commit()
    return [Claimed(*row) for row in rows]


def renew(ids: list[int], worker: str, lease: timedelta) -> None:
    """Extend this worker's claims on `ids` (the jobs it is running)."""
    db.session.execute(
        update(Job)
        .where(Job.id.in_(ids), Job.claimed_by == worker, Job.state == RUNNING)
        .values(run_at=clock.now() + lease)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def finish(job: Claimed, worker: str) -> None:
    """The job is done: its row goes (unless another worker took it over meanwhile)."""
    db.session.execute(delete(Job).where(Job.id == job.id, Job.claimed_by == worker))
    db.session.commit()


def backoff(attempts: int, base: float) -> float:
    """Seconds before the next attempt: doubling from `base`, jittered so that jobs that failed
    together (an outage) do not all come back at once."""
    return min(MAX_BACKOFF_SECONDS, base * 2 ** (attempts - 1)) * random.uniform(0.75, 1.0)


def fail(job: Claimed, worker: str, error: str, base: float) -> bool:
    """An attempt failed: the job waits for its next attempt, or is failed after its last.
    Whether it failed for good."""
    now = clock.now()
    final = job.attempts >= job.max_attempts
    retry_at = now if final else now + timedelta(seconds=backoff(job.attempts, base))
    db.session.execute(
        update(Job)
        .where(Job.id == job.id, Job.claimed_by == worker)
        .values(state=FAILED if final else WAITING, run_at=retry_at, last_error=error[:500])
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return final


def give_back(ids: list[int], worker: str) -> None:
    """A worker stopping hands back the jobs it runs, due now, without counting the attempt."""
    db.session.execute(
        update(Job)
        .where(Job.id.in_(ids), Job.claimed_by == worker, Job.state == RUNNING)
        .values(state=WAITING, run_at=clock.now(), attempts=Job.attempts - 1, claimed_by=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def fail_abandoned(kinds: list[str]) -> int:
    """Jobs whose worker died during their last attempt are failed, not run again."""
    result = db.session.execute(
        update(Job)
        .where(
            Job.kind.in_(kinds),
            Job.state == RUNNING,
            Job.run_at <= clock.now(),
            Job.attempts >= Job.max_attempts,
        )
        .values(state=FAILED, last_error=STOPPED)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount


def schedule_periodic(every: dict[str, float]) -> list[str]:
    """Enqueue the periodic jobs whose period has come; the names this process enqueued.

    Each schedule row is moved on by a compare-and-set of the `due_at` it was read with: of the
    workers and hosts that read the same row, one moves it and enqueues the run. A run is not
    enqueued while the previous one still waits.
    """
    now = clock.now()
    due = {
        name: at for name, at in db.session.execute(select(JobSchedule.name, JobSchedule.due_at))
    }
    missing = [name for name in every if name not in due]
    if missing:
        _insert_missing([{"name": name, "due_at": now} for name in missing])
        rows = select(JobSchedule.name, JobSchedule.due_at).where(JobSchedule.name.in_(missing))
        due |= {name: at for name, at in db.session.execute(rows)}
    enqueued = []
    for name, seconds in every.items():
        if due[name] > now:
            continue
        moved = db.session.execute(
            update(JobSchedule)
            .where(JobSchedule.name == name, JobSchedule.due_at == due[name])
            .values(due_at=now + timedelta(seconds=seconds))
            .execution_options(synchronize_session=False)
        )
        waiting = exists().where(Job.kind == name, Job.state == WAITING)
        if moved.rowcount == 1 and not db.session.scalar(select(waiting)):
            db.session.execute(
                insert(Job).values(
                    kind=name,
                    payload={},
                    state=WAITING,
                    attempts=0,
                    max_attempts=1,
                    run_at=now,
                    created_at=now,
                )
            )
            enqueued.append(name)
    db.session.commit()
    return enqueued


def _insert_missing(rows: list[dict]) -> None:
    postgresql = db.session.get_bind().dialect.name == "postgresql"
    statement = (postgresql_insert if postgresql else sqlite_insert)(JobSchedule).values(rows)
    db.session.execute(statement.on_conflict_do_nothing())


def clear_failures(kind: str, but: int | None = None) -> None:
    """A periodic job ran: its earlier failures are over (all, or all but its latest, `but`)."""
    where = [Job.kind == kind, Job.state == FAILED] + ([Job.id != but] if but else [])
    db.session.execute(delete(Job).where(*where))
    db.session.commit()


def counts() -> dict[tuple[str, str], int]:
    """(kind, state) -> how many jobs."""
    rows = db.session.execute(
        select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)
    ).all()
    return {(kind, state): n for kind, state, n in rows}


def listing(states: tuple[str, ...] = (WAITING, RUNNING, FAILED), limit: int = 1000) -> list[Job]:
    return list(
        db.session.scalars(
            select(Job).where(Job.state.in_(states)).order_by(Job.run_at, Job.id).limit(limit)
        )
    )


def retry(ids: list[int] | None) -> int:
    """Failed jobs (`ids`, or all) wait again, with their attempts counted afresh."""
    where = [Job.state == FAILED] + ([Job.id.in_(ids)] if ids is not None else [])
    result = db.session.execute(
        update(Job)
        .where(*where)
        .values(state=WAITING, attempts=0, run_at=clock.now(), claimed_by=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount


def remove(ids: list[int] | None, failed_only: bool = True) -> int:
    """Delete jobs (`ids`, or all failed ones); a running job is never deleted."""
    where = [Job.state == FAILED] if failed_only else [Job.state != RUNNING]
    if ids is not None:
        where.append(Job.id.in_(ids))
    result = db.session.execute(delete(Job).where(*where))
    db.session.commit()
    return result.rowcount
