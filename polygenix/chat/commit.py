"""The transactions that store a turn, all run by one helper (`_transaction`) that takes rows
in the order every turn and a deletion's cascade take them, counts what the call used, releases
its budget reservation, and commits or rolls back:

- `commit_question`: the user's message (and a reply, if any) in the turn's session, made
  first if it is new;
- `commit_again`: a turn that answers an existing question again (regenerate, edit);
- `commit_stream_end`: a streamed turn's last transaction, its reply whole or cut short.

A turn whose session was deleted meanwhile stores nothing and raises SessionDeleted (a 404),
AccountDeleted (a 401) if the account went; what the call used counts all the same.
"""

from collections.abc import Callable
from datetime import datetime

from flask_smorest import abort
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from .. import clock
from ..auth.access import account_exists
from ..errors import AccountDeleted, Conflict, SessionDeleted
from ..extensions import db
from ..governance import charging, ledger
from ..models import ChatSession, Message
from . import attempts, first_turn, next_turn, tool_loop, transcript
from . import session_rows as rows
from .history import catch_up, find_session, new_number
from .turn_state import CHANGED, Kind, NewRow, Turn, asked, make_title

# Each lost race means another request of the same user won one, so this many concurrent
# new-session requests from one user always succeed.
CREATE_ATTEMPTS = 20


def commit_question(
    turn: Turn,
    reply: Message | None = None,
    error: str | None = None,
    *,
    whole: bool = False,
    usage: ledger.Entry | None = None,
    ended: bool = True,
) -> None:
    """Commit the user's message (flagged with `error`, if any) and `reply` (if any) in the
    turn's session: the existing one, or a new one numbered `turn.number` (the user's next free
    number if None) whose first messages are `turn.seed`, and the reply's `usage`. With
    `whole`, the reply is complete and extends the session's transcript digest. Unless the
    call is still under way (not `ended`: a stream's start), its budget reservation goes.

    A new session's number comes from the user's counter, counted up (or, for a number asked
    for, raised to it) first in the transaction: the user's row, locked until the commit, queues
    the user's new sessions, so they never collide. The unique (user_id, number) index settles
    the races left: a request that asked for a number another took meanwhile stores its
    message in the winner's session. On PostgreSQL a plain new session is one statement
    instead (first_turn.py), which holds the user's row for that statement alone, and so is a
    plain turn of an existing session (next_turn.py).
    """
    session, question = turn.session, None
    existing, number = session is not None, 0

    def first() -> bool:  # the number from the user's row first, as a deletion locks it first
        nonlocal existing, number
        existing = session is not None
        if existing:
            return False
        number, held = new_number(turn.user_id, turn.number)
        return held

    def write() -> bool:
        nonlocal session, question
        now = clock.now()
        added = [] if existing else transcript.entries(turn.seed)
        if whole and reply is not None:
            added += tool_loop.whole_turn(asked(turn), reply.content, reply.tool_calls)
        if session is None:
            session = _new_session(turn, number, now, added)
        else:
            digest = session.transcript_digest
            session = db.session.merge(session, load=False)
            with db.session.no_autoflush:
                if not rows.touch_session(turn.user_id, session, now, digest, added):
                    return False  # deleted, or its id now another's
                if turn.repeats is not None:  # a retry: its failed attempt gives way
                    attempts.supersede(turn.repeats, session.id)
        question = _question(turn, session, error)
        if not existing and turn.seed:
            db.session.add(session)
            db.session.flush()
            rows.add_seed(session, turn)  # the earlier messages first, in their order
        for result in turn.results[:-1]:  # the other results of the turn, in their order
            db.session.add(tool_loop.result_row(session, result, turn.asked_at))
        db.session.add(question)
        if turn.attachment_ids or turn.inline_images:
            db.session.flush()
            rows.attach(turn, question.id)
        if reply is not None:
            reply.session = session
            reply.reply_to = question
            reply.created_at = now
            db.session.add(reply)
        if whole and reply is not None and turn.on_store is not None:
            db.session.flush()
            turn.on_store(session.id, reply.id, reply)
        return True

    def retry() -> bool:
        nonlocal session
        if existing or not account_exists(turn.user_id):  # deleted since `prepare`
            return False
        if turn.number is None:  # the counter was behind the user's numbers
            catch_up(turn.user_id)
            db.session.commit()
        session = find_session(turn.user_id, turn.number) if turn.number is not None else None
        return True

    if first_turn.applies(turn) and _in_one_statement(turn, reply, error, whole, usage, ended):
        return
    if next_turn.applies(turn) and _next_in_one_statement(turn, reply, error, whole, usage, ended):
        return
    _transaction(turn, usage, write, first=first, retry=retry, ended=ended)
    turn.session, turn.question, turn.reply = session, question, reply
    turn.created = not existing


def _new_session(turn: Turn, number: int, now, added: list[tuple[str, str]]) -> ChatSession:
    return ChatSession(
        user_id=turn.user_id,
        number=number,
        title=make_title(tool_loop.first_text([*turn.seed, *asked(turn)], turn.content)),
        created_at=turn.asked_at,
        changed_at=now,
        updated_at=now,
        transcript_digest=transcript.extend(None, added) if added else None,
    )


def _question(turn: Turn, session: ChatSession, error: str | None) -> Message:
    question = Message(
        session=session,
        is_bot=False,
        content=turn.content,
        created_at=turn.asked_at,
        error=error,
        retry_key=turn.retry_key if error is not None else None,
    )
    if turn.results:
        question.tool_call_id = turn.results[-1]["tool_call_id"]
    return question


def _stored_now(turn: Turn, reply: Message | None, whole: bool) -> tuple[datetime, list]:
    """A turn stored in one statement: the moment it is stored (the reply's `created_at`, if
    any) and the transcript entries it adds to its session (its whole turn's, if `whole`)."""
    now = clock.now()
    added = []
    if reply is not None:
        reply.created_at = now
        if whole:
            added = tool_loop.whole_turn(asked(turn), reply.content, reply.tool_calls)
    return now, added


def _kept(turn: Turn, reply: Message | None, whole: bool) -> NewRow | None:
    """What the caller keeps with a whole reply, as a part of the one statement: its
    Turn.new_row, which every caller that keeps a row with a whole reply (Turn.on_store) gives
    (a streamed reply's is written by stream_store.py as the stream ends)."""
    return turn.new_row if whole and reply is not None else None


def _in_one_statement(
    turn: Turn,
    reply: Message | None,
    error: str | None,
    whole: bool,
    usage: ledger.Entry | None,
    ended: bool,
) -> bool:
    """commit_question's plain new session (first_turn.py; on SQLite, its Core statements): the
    counter, the session, the question, the reply, the usage, the budget's reservation released
    (if `ended`) and what the caller keeps with the reply (its Turn.new_row) in one statement,
    then the commit, so the user's row is locked for that statement alone. False when it cannot
    be stored so (rolled back): commit_question's path then stores it, or says why not."""
    now, added = _stored_now(turn, reply, whole)
    session = _new_session(turn, 0, now, added)
    question = _question(turn, session, error)
    new_row = _kept(turn, reply, whole)
    if not first_turn.store(turn, session, question, reply, usage, ended, new_row):
        return False
    db.session.commit()  # alone (on PostgreSQL), a no-op: the statement was its transaction
    if ended:
        charging.released(turn)
    first_turn.keep(session, question, reply)
    turn.session, turn.question, turn.reply = session, question, reply
    turn.created = True
    return True


def _next_in_one_statement(
    turn: Turn,
    reply: Message | None,
    error: str | None,
    whole: bool,
    usage: ledger.Entry | None,
    ended: bool,
) -> bool:
    """commit_question's plain turn of an existing session on PostgreSQL (next_turn.py): the
    usage, the budget's reservation released (if `ended`), the session touched, the question,
    the reply and what the caller keeps with it (its Turn.new_row) in one statement, its own
    transaction. False when the statement could not be written (rolled back): commit_question's
    path then stores it. SessionDeleted when the session (or the account) went meanwhile; the
    usage has counted all the same, and the reservation gone."""
    now, added = _stored_now(turn, reply, whole)
    question = _question(turn, turn.stored_session, error)
    new_row = _kept(turn, reply, whole)
    stored = next_turn.store(turn, question, reply, usage, ended, now, added, new_row)
    if stored is None:
        return False
    if ended:
        charging.released(turn)
    if not stored:
        charging.count_alone(turn, None)  # a stream start's reservation goes, as in `_transaction`
        raise deleted(turn.user_id)
    turn.question, turn.reply, turn.created = question, reply, False
    return True


def _transaction(
    turn: Turn,
    usage: ledger.Entry | None,
    write: Callable[[], bool],
    *,
    first: Callable[[], bool] | None = None,
    retry: Callable[[], bool] | None = None,
    ended: bool = True,
) -> None:
    """One transaction of a turn's store, whichever its path: `first()` (a new session's number,
    from the user's row; it says whether that locked the row), the call's usage and its budget
    reservation released (unless the call is still under way, not `ended`: a stream's start),
    the user's row held first if it is not yet, one statement on PostgreSQL (charging.settle),
    then `write()`, which touches the session, writes the turn's rows and says whether they were
    still the turn's. So every turn locks rows in one order (the user's, their usage, their
    reservation, the session, its messages) and an account's deletion locks the user's row
    before any other: neither deadlocks with another. With no usage nor reservation, the
    session's touch takes the user's row first itself (session_rows.touch_session), as a new
    session's counter or insert does.

    A row that another transaction took or deleted meanwhile (IntegrityError, StaleDataError)
    rolls it back; `retry()`, if given, may then say it is worth another try, up to
    CREATE_ATTEMPTS in all (after which a 503). Whatever else stops it rolls it back too, and
    what the call used still counts on its own: SessionDeleted when `write()` found the rows gone
    or the account went; a Conflict raised by `write()` goes on up.
    """
    for _ in range(CREATE_ATTEMPTS):
        try:
            with db.session.no_autoflush:
                held = first() if first is not None else False
                if not charging.settle(turn, usage, ended, held):
                    raise SessionDeleted()
            if not write():
                raise SessionDeleted()
            db.session.commit()
        except Conflict:
            db.session.rollback()
            charging.count_alone(turn, usage)
            raise
        except SessionDeleted:
            db.session.rollback()
            charging.count_alone(turn, usage)
            raise deleted(turn.user_id) from None
        except (IntegrityError, StaleDataError):
            db.session.rollback()
            if retry is not None and retry():
                continue
            charging.count_alone(turn, usage)  # the session went, or the account with its usage
            raise deleted(turn.user_id) from None
        if ended:
            charging.released(turn)
        return
    charging.count_alone(turn, usage)
    abort(503, message="Too many concurrent new sessions; try again.", headers={"Retry-After": "1"})


def commit_again(
    turn: Turn,
    reply: Message | None,
    usage: ledger.Entry | None = None,
    error: str | None = None,
    *,
    supersede: bool = True,
    ended: bool = True,
) -> None:
    """Commit a turn that answers its question again: the usage, the session touched, the
    question (an edit's new words, the error), what it replaces superseded (unless not yet:
    a stream's regenerate supersedes when its reply is complete), and `reply`; the budget
    reservation goes unless the call is still under way (not `ended`: a stream's start). One
    transaction, rows locked in the order of every turn. SessionDeleted when the session went
    meanwhile; a 409 when the question stopped being current (an earlier message was edited
    meanwhile, or, for a regenerate, another question followed it)."""
    question = turn.stored_question
    if turn.kind is Kind.EDIT:  # the new words (and the failure, if the call failed)
        changes = {"content": turn.content, "error": error}
    else:  # a regenerate keeps the words; a failure flag goes once there is a new reply
        changes = {"error": None} if supersede else {}

    def write() -> bool:
        if not rows.touch(turn):
            return False
        if changes:
            db.session.execute(
                update(Message)
                .where(
                    Message.id == question.id, Message.session_id == turn.session_id, rows.CURRENT
                )
                .values(changes)
                .execution_options(synchronize_session=False)
            )
        if not rows.still_current(turn):
            raise Conflict(CHANGED)
        # An edit's images go with its words; a regenerate's once its reply replaces the other.
        if turn.attachment_ids is not None and (turn.kind is Kind.EDIT or supersede):
            rows.attach(turn, question.id)
        if supersede:
            rows.supersede(turn)
        if reply is not None:
            reply.session = turn.stored_session
            reply.reply_to_id = question.id
            reply.created_at = clock.now()
            db.session.add(reply)
        return True

    _transaction(turn, usage, write, ended=ended)
    turn.reply = reply


def commit_stream_end(turn: Turn, usage: ledger.Entry | None, messages, added=None) -> None:
    """A streamed turn's end: its usage counted (and its budget reservation released) by a
    short transaction of its own, then the last transaction of its rows: the session touched
    (its transcript grown by `added`), then `messages()`, which says whether its rows were still
    there. So a user's hundreds of streams ending at once queue on the user's usage row for one
    statement each, not for the whole store. SessionDeleted when the session (or the account)
    went meanwhile; the usage has counted all the same."""
    charging.count_alone(turn, usage)
    _transaction(turn, None, lambda: rows.touch(turn, added) and messages())


def deleted(user_id: int) -> SessionDeleted:
    """What a turn whose rows are gone raises: AccountDeleted (a 401, what every later request
    with the token gets) if the account went, else SessionDeleted (a 404). One query, on this
    failure path only: the store cannot tell which deletion it lost to."""
    return SessionDeleted() if account_exists(user_id) else AccountDeleted()
