"""Stored responses: each a turn of one of its owner's sessions (models.StoredResponse), found
by its id for its owner only, continued by `previous_response_id`, deleted with its turn.

A continuation's context is its chain of responses, rebuilt from what PolyGenix kept of each
(its input items and its output): the newest responses that fit CONTEXT_MAX_CHARS, at most
CONTEXT_MAX_MESSAGES / 2 of them, in one recursive query. Two continuations of one response
are two branches, as on OpenAI: each has the same context, both turns are stored in the
session one after the other, and a continuation of either sees its own branch only.
"""

import json
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import (
    JSON,
    Insert,
    Update,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.types import TypeDecorator

from .. import clock
from ..attachments import store as attachments
from ..auth.access import unless_deleted
from ..chat import images as chat_images
from ..chat.tool_loop import chars
from ..chat.turn_state import NewRow
from ..extensions import db
from ..models import ChatSession, Message, StoredResponse
from ..providers import ChatMessage
from .responses_images import asked_with_images, with_images
from .responses_schema import RESPONSE_ID, messages_of, response_of

R = StoredResponse


def find(user_id: int, public_id: str) -> StoredResponse | None:
    """The user's stored response `public_id`, else None (another user's is none of theirs)."""
    if not isinstance(public_id, str) or not RESPONSE_ID.fullmatch(public_id):
        return None
    return db.session.scalar(_FIND, {"public_id": public_id, "user_id": user_id})


def session_number(row: StoredResponse) -> int | None:
    """The number of the session a stored response is in."""
    return db.session.scalar(select(ChatSession.number).where(ChatSession.id == row.session_id))


def resolver(user_id: int):
    """What an `item_reference` names: the user's stored input or output item of that id
    (its response found from the id), else None; AccountDeleted if its response is not found
    because the account was deleted since the caller was looked up."""
    seen: dict[str, StoredResponse | None] = {}

    def resolve(item: str) -> dict | None:
        response = response_of(item)
        if response is None:
            return None
        if response not in seen:
            seen[response] = find(user_id, response)
            if seen[response] is None:
                unless_deleted(user_id)  # its responses went with it
        row = seen[response]
        kept = [] if row is None else [*row.items, *row.body.get("output", [])]
        return next((dict(i) for i in kept if i.get("id") == item), None)

    return resolve


# A call under way that claimed its retry key has no session yet: it is not found.
_FIND = select(R).where(
    R.public_id == bindparam("public_id"),
    R.user_id == bindparam("user_id"),
    R.session_id.is_not(None),
)


def turn_messages(items: list[dict], body: dict) -> list[ChatMessage]:
    """One stored response as the messages it adds to a context: its input, then its answer
    (its message's text and its function calls)."""
    answer = [
        item
        for item in body.get("output", [])
        if item.get("type") == "function_call"
        or (item.get("type") == "message" and any(p.get("text") for p in item["content"]))
    ]
    return messages_of(items + answer)


def _chain():
    """The rows of a chain of responses, newest first, from the user's response `public_id`
    (the first row with its session): one recursive query, built once."""
    chain = select(R.id, R.previous_id, literal(0).label("depth")).where(
        R.public_id == bindparam("public_id"),
        R.user_id == bindparam("user_id"),
        R.reply_id.is_not(None),
    )
    chain = chain.cte("chain", recursive=True)
    chain = chain.union_all(
        select(R.id, R.previous_id, (chain.c.depth + 1).label("depth")).where(
            R.id == chain.c.previous_id,
            R.user_id == bindparam("user_id"),
            chain.c.depth < bindparam("most"),
        )
    )
    first = and_(
        chain.c.depth == 0,
        ChatSession.id == R.session_id,
        ChatSession.user_id == bindparam("user_id"),
    )
    return (
        select(R.id, R.items, R.body, R.question_id, ChatSession)
        .join(chain, R.id == chain.c.id)
        .outerjoin(ChatSession, first)
        .order_by(chain.c.depth)
    )


_CHAIN = _chain()


@dataclass
class Chain:
    """What a continuation continues: the response's row id, its session, the context."""

    previous_id: int
    session: ChatSession
    messages: list[ChatMessage]


def chain(user_id: int, public_id: str, reserved: int) -> Chain | None:
    """The user's stored response `public_id` (one that has a reply), its session, and the
    context a continuation of it is sent: its chain's newest responses that fit the budget
    (CONTEXT_MAX_CHARS less the `reserved` characters of the new input), oldest first, their
    questions with their stored images (the newest ATTACHMENT_CONTEXT_IMAGES of them); None if
    it is none of the user's. One query."""
    if not isinstance(public_id, str) or not RESPONSE_ID.fullmatch(public_id):
        return None
    config = current_app.config
    most = config["CONTEXT_MAX_MESSAGES"] // 2
    found = db.session.execute(
        _CHAIN, {"public_id": public_id, "user_id": user_id, "most": max(most - 1, 0)}
    ).all()
    if not found or found[0][4] is None or found[0][2].get("status") == "failed":
        return None  # none of the user's, or a failed response (the part of a reply it kept)
    row_id, session = found[0][0], found[0][4]
    budget = config["CONTEXT_MAX_CHARS"] - reserved
    turns: list[list[ChatMessage]] = []
    asked: dict[int, ChatMessage] = {}
    for _, items, body, question, _ in found if most >= 1 else ():  # newest first
        messages = turn_messages(items, body)
        cost = chars(messages)
        if cost > budget:
            break
        budget -= cost
        turns.append(messages)
        if question is not None and asked_with_images(items):
            asked[question] = next(m for m in reversed(messages) if m["role"] == "user")
    chat_images.resend(asked, config)
    while turns and sum(map(chars, turns)) > config["CONTEXT_MAX_CHARS"] - reserved:
        turns.pop()  # the oldest, once its images are counted
    return Chain(row_id, session, [message for turn in reversed(turns) for message in turn])


def listed(row: StoredResponse) -> list[dict]:
    """A stored response's input items as `input_items` lists them: the last message's stored
    images as data: URLs."""
    items = list(row.items)
    if not asked_with_images(items):
        return items
    question = row.question_id
    most = current_app.config["ATTACHMENTS_PER_MESSAGE"]
    pictures = attachments.images_for([question], most).get(question, []) if question else []
    return items[:-1] + [with_images(items[-1], pictures)]


@dataclass(frozen=True)
class Record:
    """A response's record, as it is written with its turn: its owner, its id, its input items,
    the response object as JSON (the very text the call was answered with, when it was), the
    row of the response it continues, and whether a row claimed the call's retry key
    (responses_retries.py: that row becomes the record)."""

    user_id: int
    public_id: str
    items: list
    body: str
    previous: int | None
    claimed: bool = False

    def params(self) -> dict:
        """Its values as the statements' parameters, but its turn's ids."""
        row = {"user_id": self.user_id, "public_id": self.public_id, "items": self.items}
        row |= {"previous": self.previous, "body": self.body}
        if self.claimed:
            return row | {"claimed_id": self.public_id, "owner": self.user_id}
        return row | {"created_at": clock.now()}

    def add(self, session_id: int, reply_id: int) -> None:
        """Write it in the transaction that stores its turn (Turn.on_store): a new row, or the
        row that claimed its retry key. The response it continues may have been deleted
        meanwhile: then it continues none. One statement, on the session's connection (a Core
        statement has nothing of the ORM's to do)."""
        ids = {"session_id": session_id, "reply_id": reply_id}
        db.session.connection().execute(_RECORD if self.claimed else _INSERT, self.params() | ids)

    def new_row(self) -> NewRow:
        """It as a part of the one statement that stores a plain turn (chat/first_turn.py,
        chat/next_turn.py): a new row inserted with the turn's rows, or the row that claimed the
        call's retry key updated with them."""
        params = {f"{_K}{name}": value for name, value in self.params().items()}
        return NewRow(_updated if self.claimed else _inserted, params)


def add_failed(
    user_id: int,
    session_id: int,
    question_id: int,
    reply_id: int | None,
    items: list,
    body: dict,
    previous: int | None,
    claimed: bool = False,
) -> None:
    """Record a failed response with its question (and the part of a reply a stream cut short
    kept, if its row is still there), and commit."""
    row = {"user_id": user_id, "session_id": session_id, "question_id": question_id}
    row |= {"reply_id": reply_id, "public_id": body["id"], "items": items}
    row |= {"previous": previous, "body": json.dumps(body)}
    if claimed:
        db.session.execute(_RECORD_FAILED, row | {"claimed_id": body["id"], "owner": user_id})
    else:
        db.session.execute(_INSERT_FAILED, row | {"created_at": clock.now()})
    db.session.commit()


class Serialised(TypeDecorator):
    """A JSON column's value bound already serialised (a str of JSON), as it is."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect):
        return None


_OF_REPLY = select(Message.reply_to_id).where(Message.id == bindparam("reply_id"))
_PREVIOUS_ROW = select(R.id).where(R.id == bindparam("previous")).scalar_subquery()
_KEPT_REPLY = select(Message.id).where(Message.id == bindparam("reply_id")).scalar_subquery()
_RECORDED = {
    "session_id": bindparam("session_id"),
    "previous_id": _PREVIOUS_ROW,
    "items": bindparam("items"),
    "body": bindparam("body", type_=Serialised()),
}
_ANSWERED = _RECORDED | {
    "question_id": _OF_REPLY.scalar_subquery(),
    "reply_id": bindparam("reply_id"),
}
_FAILED = _RECORDED | {"question_id": bindparam("question_id"), "reply_id": _KEPT_REPLY}
_CREATED = {
    "public_id": bindparam("public_id"),
    "user_id": bindparam("user_id"),
    "created_at": bindparam("created_at"),
}
# No RETURNING of the new row's id: nothing reads it.
_INSERT = insert(R.__table__).inline().values(_CREATED | _ANSWERED)
_INSERT_FAILED = insert(R.__table__).inline().values(_CREATED | _FAILED)
_CLAIMED = (R.public_id == bindparam("claimed_id")) & (R.user_id == bindparam("owner"))
_RECORD = update(R.__table__).where(_CLAIMED).values(_ANSWERED)
_RECORD_FAILED = update(R.__table__).where(_CLAIMED).values(_FAILED)

_K = "k_"  # the prefix of a new record's parameters in its turn's statement


def _inserted(ids: dict) -> Insert:
    """A new record as an INSERT … SELECT, a part of the statement that stores its turn: the
    turn's session, question and reply ids are the columns `ids` (of that statement's rows),
    the others parameters named _K and their name (Record.new_row's). Built once per statement
    (first_turn.py and next_turn.py cache it by this function)."""
    c = R.__table__.c
    values = ids | {name: bindparam(_K + name, type_=c[name].type) for name in _NEW_ROW}
    values["body"] = bindparam(_K + "body", type_=Serialised())
    values["previous_id"] = select(R.id).where(R.id == bindparam(_K + "previous")).scalar_subquery()
    return insert(R.__table__).from_select(list(values), select(*values.values()))


_NEW_ROW = ("public_id", "user_id", "created_at", "items")


def _updated(ids: dict) -> Update:
    """The row that claimed the call's retry key made the record, a part of the statement that
    stores its turn (given the same `ids` and parameters as `_inserted`): an UPDATE … FROM the
    turn's ids with the claim's, found as `_RECORD` finds it, by its id and owner. No reply
    stored, no row updated; a claim deleted meanwhile matches none either: the turn is stored
    without a record, as `add` leaves it."""
    c = R.__table__.c
    claim = {
        "public_id": bindparam(_K + "claimed_id", type_=c.public_id.type),
        "user_id": bindparam(_K + "owner", type_=c.user_id.type),
    }
    given = select(*(value.label(name) for name, value in (ids | claim).items())).subquery()
    # `user_id` set to what it is: the statement's parameters name the turn's `user_id`, which
    # an UPDATE would otherwise take for a value to set.
    values = {name: given.c[name] for name in (*ids, "user_id")} | {
        "items": bindparam(_K + "items", type_=c["items"].type),
        "body": bindparam(_K + "body", type_=Serialised()),
        "previous_id": select(R.id).where(R.id == bindparam(_K + "previous")).scalar_subquery(),
    }
    found = (c.public_id == given.c.public_id) & (c.user_id == given.c.user_id)
    return update(R.__table__).where(found).values(values)


def remove(row: StoredResponse) -> None:
    """Delete a stored response and its turn from its session: the user's message (or the
    function outputs it gave) and the reply. A response that continued it now continues none."""
    question = row.question_id
    turn = [i for i in (row.reply_id, question) if i is not None]
    if question is not None:
        turn += db.session.scalars(_OTHER_RESULTS, {"session_id": row.session_id, "q": question})
    # The session first: rows are locked in the order every turn locks them.
    db.session.execute(
        update(ChatSession)
        .where(ChatSession.id == row.session_id, ChatSession.user_id == row.user_id)
        .values(changed_at=clock.now(), transcript_digest=None)
        .execution_options(synchronize_session=False)
    )
    db.session.execute(delete(R).where(R.id == row.id))
    db.session.execute(
        delete(Message)
        .where(Message.id.in_(turn), Message.session_id == row.session_id)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


_IN_SESSION = Message.session_id == bindparam("session_id")
# A turn that gave function outputs stored them just before its question (the last of them):
# the tool results after the session's last reply before it.
_OTHER_RESULTS = select(Message.id).where(
    _IN_SESSION,
    Message.id < bindparam("q"),
    Message.tool_call_id.is_not(None),
    Message.is_bot.is_(False),
    Message.id
    > select(func.coalesce(func.max(Message.id), 0))
    .where(_IN_SESSION, Message.id < bindparam("q"), Message.is_bot.is_(True))
    .scalar_subquery(),
)
