"""Streams that died with their worker: the periodic job that flags their replies.

A streamed reply holds a lease that its stream renews with each save (stream_store.py: start,
save_progress). A worker killed mid-stream stops renewing it; once it lapses, this sweep flags
the reply incomplete with the text it saved. It runs as a periodic background job
(polygenix/jobs), once every STREAM_KEEPALIVE_SECONDS across all workers and hosts, never on a
request's path.
"""

from flask import Flask
from sqlalchemy import and_, delete, select, update

from .. import clock, jobs
from ..extensions import db
from ..models import ChatSession, Message
from .turn_state import INTERRUPTED

JOB = "sweep_dead_streams"
_CURRENT = Message.superseded.is_(False)


def init_sweep(app: Flask) -> None:
    jobs.register(app, JOB, _sweep, every=app.config["STREAM_KEEPALIVE_SECONDS"])


def _sweep(payload: dict) -> None:
    sweep_dead_streams()


def sweep_dead_streams() -> int:
    """Flag as incomplete, with the text they saved, the replies whose stream stopped renewing
    its lease (its worker was killed mid-stream); their sessions count as changed."""
    now = clock.now()
    dead = select(
        Message.id, Message.session_id, Message.reply_to_id, (Message.content != "").label("text")
    ).where(Message.lease_until < now)
    rows = db.session.execute(dead).all()
    if not rows:
        db.session.commit()
        return 0
    ids = [r.id for r in rows]
    db.session.execute(
        update(Message)
        .where(Message.id.in_(ids), Message.lease_until < now)
        .values(incomplete=True, error=INTERRUPTED, lease_until=None)
    )
    # A regenerate's reply that has text replaces the question's earlier replies, as it would
    # have once finished; one with none is dropped, and the earlier reply stays current.
    others = and_(Message.reply_to_id.in_({r.reply_to_id for r in rows}), Message.id.not_in(ids))
    db.session.execute(
        update(Message)
        .where(others, Message.reply_to_id.in_({r.reply_to_id for r in rows if r.text}), _CURRENT)
        .values(superseded=True)
    )
    answered = set(db.session.scalars(select(Message.reply_to_id).where(others, _CURRENT)))
    empty = [r.id for r in rows if not r.text and r.reply_to_id in answered]
    if empty:
        db.session.execute(delete(Message).where(Message.id.in_(empty)))
    db.session.execute(
        update(ChatSession)
        .where(ChatSession.id.in_({r.session_id for r in rows}))
        .values(changed_at=now)
    )
    db.session.commit()
    return len(ids)
