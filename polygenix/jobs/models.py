"""The tables of background work: jobs waiting, running or failed, and when each periodic job is
next due."""

from datetime import datetime

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models import UTCDateTime, utcnow

WAITING, RUNNING, FAILED = "waiting", "running", "failed"


class Job(db.Model):
    """One piece of background work. A job that is done is deleted; a failed one stays (listed by
    `polygenix jobs`) until it is retried or deleted."""

    __tablename__ = "jobs"
    __table_args__ = (
        # What is due: every poll reads it.
        Index("ix_jobs_state_run_at", "state", "run_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    # Ids and values the job needs, never a user's text (a job reads that when it runs).
    payload: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default=WAITING)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int]
    # Waiting: when it may start. Running: when its claim lapses unless its worker renews it (a
    # worker that died is then replaced). Failed: when it failed for the last time.
    run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The worker (host:pid:nonce) that claimed it last.
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)


class JobSchedule(db.Model):
    """When a periodic job is next due: the host that moves `due_at` on (a compare-and-set)
    enqueues that period's run, so each period runs once however many hosts poll."""

    __tablename__ = "job_schedules"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
