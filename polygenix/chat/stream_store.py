"""Storing a streamed reply, in steps, so that nothing a client was told of is lost: `start`
(the user's message and an empty reply, leased to the stream, before the first event),
`save_progress` (the text so far, at most every STREAM_SAVE_INTERVAL, which also renews the
lease), `finish` (the reply, whole or cut short, or the message flagged when no text came).
A reply whose stream died with its worker keeps its lease until it lapses; the sweep (sweep.py)
then flags it.

What a caller keeps with a whole streamed reply (Turn.on_store: a Responses API record) is
written in `finish`'s transaction. When it is a `KeptRow` (its values known once the reply is),
on PostgreSQL it is a part of the statement that writes the reply (a data-modifying `WITH`: the
reply's `UPDATE … RETURNING`, then the row's `INSERT … SELECT`, or `UPDATE … FROM`, given the
reply's ids), not a statement of its own after it.
"""

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from types import SimpleNamespace
from typing import Any

from flask import current_app
from sqlalchemy import and_, bindparam, delete, func, select, update

from .. import clock
from ..errors import Conflict
from ..extensions import db
from ..governance import charging
from ..models import Message
from ..providers import ProviderError
from ..providers.base import USAGE
from ..providers.client import no_reply
from . import session_rows as rows
from . import titles, tool_loop, transcript
from .commit import commit_again, commit_question, commit_stream_end, deleted
from .first_turn import kept_with
from .turn_state import CHANGED, CLIENT_CLOSED, Kind, NewRow, Turn, asked

_messages = Message.__table__


@dataclass(frozen=True)
class KeptRow:
    """A Turn.on_store whose row a streamed reply's last statement can write (see above):
    `row(reply)`, the row as a NewRow for the finished reply (its fields as attributes); called
    as on_store (`store`) where it is not a part of that statement."""

    store: Callable[[int, int, Any], None]
    row: Callable[[Any], NewRow]

    def __call__(self, session_id: int, reply_id: int, reply: Any) -> None:
        self.store(session_id, reply_id, reply)


def _lease() -> datetime:
    """How long a stream's reply counts as alive without a save: a live stream saves at least
    at every keep-alive."""
    config = current_app.config
    return clock.now() + timedelta(
        seconds=2 * config["STREAM_KEEPALIVE_SECONDS"] + config["STREAM_SAVE_INTERVAL"]
    )


def start(turn: Turn) -> None:
    """A streamed turn begins: the user's message and an empty reply, leased to this stream."""
    turn.saved_at = time.monotonic()
    if not turn.persist:
        return
    turn.lease_token = secrets.token_hex(16)
    leased = {"lease_until": _lease(), "lease_token": turn.lease_token}
    if turn.kind.again:
        reply = Message(is_bot=True, content="", model=turn.model_name, **leased)
        # An edit is the user's words, kept at once; a regenerate replaces the earlier reply
        # only once the new one has text (finish).
        commit_again(turn, reply, supersede=turn.kind is Kind.EDIT, ended=False)
        return
    if turn.session is not None:
        turn.digest = turn.session.transcript_digest
    elif turn.seed:
        turn.digest = transcript.extend(None, transcript.entries(turn.seed))
    reply = Message(is_bot=True, content="", model=turn.model_name, incomplete=False, **leased)
    commit_question(turn, reply, ended=False)


def _own_reply(turn: Turn):
    """The turn's streamed reply, if it is still the stream's own."""
    return and_(
        Message.id == turn.reply_id,
        Message.session_id == turn.session_id,
        Message.lease_token == turn.lease_token,
    )


_SAVE = (
    update(Message)
    .where(
        Message.id == bindparam("reply_id"),
        Message.session_id == bindparam("in_session"),
        Message.lease_token == bindparam("token"),
        Message.lease_until.is_not(None),
    )
    .values(
        content=bindparam("content"),
        reasoning=bindparam("reasoning"),
        tool_calls=bindparam("tool_calls"),
        lease_until=bindparam("lease"),
    )
)


def save_progress(turn: Turn, text: str, reasoning: str, calls: list | None = None) -> None:
    """The text, reasoning and tool calls so far (the last call's arguments perhaps cut: the
    reply is not finished), and a renewed lease: one UPDATE. SessionDeleted if the reply is
    gone (AccountDeleted with the account)."""
    if not turn.persist:
        return
    values = {
        "content": text,
        "reasoning": reasoning or None,
        "tool_calls": calls or None,
        "lease": _lease(),
    }
    owner = {"reply_id": turn.reply_id, "in_session": turn.session_id, "token": turn.lease_token}
    saved = rows.changed(_SAVE, owner | values)
    db.session.commit()
    turn.saved_at = time.monotonic()
    if saved != 1:
        raise deleted(turn.user_id)


def due(turn: Turn) -> bool:
    return time.monotonic() - turn.saved_at >= current_app.config["STREAM_SAVE_INTERVAL"]


def finish(
    turn: Turn,
    text: str,
    reasoning: str,
    usage: dict,
    options: dict,
    failure: ProviderError | None,
) -> tuple[Message | None, ProviderError | None]:
    """The streamed reply, whole or (with `failure`) the part received, marked incomplete; with
    neither text nor a tool call, the user's message is flagged with the failure instead (a
    stream that ended well with neither failed too: an empty reply must never enter later
    context). One transaction, which also counts what the call used, even when the session was
    deleted meanwhile (the provider was used). `usage` holds the stream's usage, model and finish
    reason (client.merge). Returns the reply (if any text came) and the failure (if any)."""
    calls = usage.get("tool_calls") or None
    if failure is None and not text and not calls:
        failure = no_reply(turn.provider.name, usage.get("finish_reason"), reasoning)
    if failure is not None and not text and not calls:
        charging.account(turn, str(failure.status))
        # A client that hangs up while the provider is still silent (reading a long prompt, a
        # model thinking) escapes no budget: the provider was sent the whole prompt.
        hung_up = failure.status == CLIENT_CLOSED
        entry = charging.used_without_reply(turn, usage, reasoning, prompt_read=hung_up)
        if not turn.persist:
            charging.count_alone(turn, entry)
            return None, failure

        def flag() -> bool:
            deleted = rows.changed(delete(Message).where(_own_reply(turn)))
            if turn.kind is Kind.REGENERATE:  # nothing changes: the earlier reply stays current
                return deleted == 1
            flagged = update(Message).where(rows.own_question(turn)).values(error=failure.message)
            return rows.changed(flagged) == 1

        commit_stream_end(turn, entry, flag)
        if turn.kind is not Kind.REGENERATE:
            turn.stored_question.error = failure.message
        return None, failure
    counts = {name: usage.get(name) for name in USAGE}
    charging.account(turn, "incomplete" if failure else "ok", *[counts[n] for n in USAGE[:2]])
    model = usage.get("model") or turn.model
    # Unreported (a stream cut short), the output is estimated from all it said, calls included.
    called = tool_loop.arguments_chars(calls)
    entry, cost = charging.charge(turn, model, counts, text, reasoning, called)
    values = {
        "content": text,
        "reasoning": reasoning or None,
        "model": f"{turn.provider.name}/{model}",
        "cost_usd": charging.dollars(cost),
        **counts,
        "options": options,
        "finish_reason": usage.get("finish_reason") if failure is None else None,
        "latency_ms": turn.latency_ms,
        "incomplete": failure is not None,
        "error": failure.message if failure is not None else None,
        "lease_until": None,
        "lease_token": None,
        # Cut short, the last call's arguments may be cut too: kept, the reply flagged
        # incomplete, never part of a later context or of the transcript's digest.
        "tool_calls": calls,
    }
    if not turn.persist:
        charging.count_alone(turn, entry)
        return Message(is_bot=True, **values), failure

    stale = []  # a turn answering again whose conversation changed while it streamed

    reply = SimpleNamespace(**values)
    kept = turn.on_store if failure is None else None
    folded = isinstance(kept, KeptRow) and not turn.kind.again and _with_reply()

    def write() -> bool:
        if folded and isinstance(kept, KeptRow):
            return _finished_with(turn, values, kept.row(reply)) == 1
        if turn.kind.again and not rows.still_current(turn, turn.reply_id):
            stale.append(True)
        row = values | {"superseded": True} if stale else values
        written = rows.changed(update(Message).where(_own_reply(turn)).values(**row))
        if turn.kind.again and written and not stale:  # it has text: it replaces what came after
            rows.supersede(turn, keep=turn.reply_id)
            db.session.execute(update(Message).where(rows.own_question(turn)).values(error=None))
            if turn.kind is Kind.REGENERATE and turn.attachment_ids is not None:
                rows.attach(turn, turn.question_id)
        if written and kept is not None:
            kept(turn.session_id, turn.reply_id, reply)
        return written == 1

    commit_stream_end(
        turn,
        entry,
        write,
        tool_loop.whole_turn(asked(turn), text, calls)
        if failure is None and not turn.kind.again
        else None,
    )
    if stale:  # kept, superseded: the client was sent its text
        raise Conflict(CHANGED)
    for name, value in values.items():
        setattr(turn.reply, name, value)
    if failure is None:
        titles.schedule(turn)
    return turn.reply, failure


def _with_reply() -> bool:
    """Whether a row kept with the reply is written by the reply's statement: PostgreSQL's
    data-modifying `WITH` (SQLite has none)."""
    return db.session.get_bind().dialect.name == "postgresql"


@cache
def _finishing(names: tuple[str, ...], inserted: Callable[[dict], Any]):
    """The reply's last `UPDATE` (its columns `names`, bound as `v_` and their name), if it is
    still the stream's own, with `inserted`'s row (NewRow.inserted) given its ids: the count of
    replies written (0 or 1), whether the row was written or not (a claim of a retry key
    deleted meanwhile: the reply is stored without it, as on_store leaves it)."""
    c = _messages.c
    own = (
        (c.id == bindparam("own_reply"))
        & (c.session_id == bindparam("in_session"))
        & (c.lease_token == bindparam("token"))
    )
    values = {name: bindparam(f"v_{name}", type_=c[name].type) for name in names}
    written = update(_messages).where(own).values(values)
    reply = written.returning(c.id, c.session_id, c.reply_to_id).cte("reply")
    return kept_with(select(func.count()).select_from(reply), reply, inserted)


def _finished_with(turn: Turn, values: dict, row: NewRow) -> int:
    """The reply written with the row kept with it, one statement: how many replies it wrote."""
    params = {"own_reply": turn.reply_id, "in_session": turn.session_id, "token": turn.lease_token}
    params |= {f"v_{name}": value for name, value in values.items()} | row.params
    statement = _finishing(tuple(values), row.inserted)
    return db.session.execute(statement, params).scalar_one()
