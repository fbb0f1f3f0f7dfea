"""A chat turn, in three steps that every caller runs in order.

1. `prepare`: resolve the model, find the session (or plan a new one), load the bounded
   context, and end the read transaction. No provider is called and nothing is written.
2. The provider call: `complete` for a whole reply, or `open_stream`.
3. Store. A whole reply: `store` or `store_failure`, one transaction that writes the session if
   it is new, the user's message, and the reply (or the message flagged with the error). A
   streamed reply is stored in steps, so that nothing a client was told of is lost: `start`
   (the message and an empty reply, before the first event), `save_progress` (the text so far,
   at most every STREAM_SAVE_INTERVAL, which also renews the stream's lease), `finish` (the
   reply, whole or cut short, or the message flagged when no text came).

An existing question may be answered again (`prepare_again`): regenerate asks the session's
last question anew, edit gives one of the user's questions new words. Either marks what it
replaces `superseded` once the new reply (or, for an edit, the edited question) is stored, so
context, counts and history only ever see the current transcript.

Storing never trusts an id alone: each write names the session's user and number, a message's
session, and a streamed reply's lease token, so a row that stopped being the turn's (deleted
meanwhile, or another user's row that took a reused id) is never written. A turn whose session
was deleted meanwhile stores nothing and raises SessionDeleted.

The plain and streamed routes (routes.py, streaming.py) are two short compositions of these.
"""

import enum
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from flask import current_app
from flask_smorest import abort
from sqlalchemy import and_, bindparam, case, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlalchemy.orm.exc import StaleDataError

from .. import clock
from ..attachments import store as attachments
from ..errors import Conflict, SessionDeleted
from ..extensions import db
from ..governance import charging, ledger
from ..governance.charging import release_unsettled  # noqa: F401 (the streamed route's)
from ..governance.policy import Limits, admit, unknown_model
from ..logs import request_id
from ..models import MAX_ID, ChatSession, Message, User
from ..provider_registry import missing_variable, registry
from ..providers import (
    ChatMessage,
    Completion,
    Options,
    Provider,
    ProviderError,
    ReplyStream,
    UnknownModelError,
)
from ..providers.base import NO_OPTIONS, USAGE
from ..providers.client import no_reply
from ..providers.messages import images_of, plain, text_of
from ..providers.tools import NO_TOOLING, Tooling
from . import attempts, images, titles, tool_loop, transcript
from .history import catch_up, find_session, new_number
from .tool_loop import chars

log = logging.getLogger(__name__)
TITLE_MAX_CHARS = 60
# Each lost race means another request of the same user won one, so this many concurrent
# new-session requests from one user always succeed.
CREATE_ATTEMPTS = 20
INTERRUPTED = "The server stopped before the reply was complete"
CLIENT_CLOSED = 499  # a stream's client went away (nginx's "client closed request")


class Kind(enum.Enum):
    """What a turn does, which picks its store path."""

    NEW = "new"  # a question that starts a session
    CONTINUED = "continued"  # a question in a session the user has
    REGENERATE = "regenerate"  # the session's last question, answered anew
    EDIT = "edit"  # one of the user's questions, given new words and answered anew
    # /v1 (Chat Completions, Responses): the client sent the whole conversation, its last
    # message the question; its session is the one it continues, or a new one.
    CONVERSATION = "conversation"

    @property
    def again(self) -> bool:
        """Whether the turn answers an existing question again (`question` is set)."""
        return self in (Kind.REGENERATE, Kind.EDIT)


@dataclass
class Turn:
    """A chat turn under way, from `prepare` to its store step."""

    user_id: int
    provider: Provider
    model: str | None  # the provider's model id; None when it has no default (not configured)
    content: str  # the user's message
    number: int | None  # the session's number; None: the user's next free one
    session: ChatSession | None  # the existing session, None: a new one
    messages: list[ChatMessage]  # what the provider is sent
    asked_at: datetime
    request_id: str | None
    kind: Kind
    options: Options = NO_OPTIONS  # what the request asked of the model
    # A new session's first messages, stored before the question: the earlier messages an
    # OpenAI client sent, but the system prompt (see prepare_conversation).
    seed: list[ChatMessage] = field(default_factory=list)
    persist: bool = True  # False: nothing is stored ("store": false)
    digest: str | None = None  # a streamed turn's session transcript digest once it began
    lease_token: str | None = None  # a streamed reply's, named by each of its writes
    started: float = 0.0  # time.monotonic() when the provider call began
    question: Message | None = None  # once stored
    reply: Message | None = None  # once stored (a streamed reply: while it is written)
    saved_at: float = field(default=0.0)  # time.monotonic() of a stream's last save
    created: bool = False  # once stored: the turn made its session
    reservation: int | None = None  # what the call holds of a budget until its usage is stored
    # A /v1 call a client may retry: the key stored with its question if it fails, and the
    # failed question of an earlier attempt that this one repeats (superseded once it is stored).
    retry_key: str | None = None
    repeats: int | None = None
    # Called in the transaction that stores the whole reply, before its commit, with the
    # session's id, the reply's id and the reply (its fields as attributes): what a caller keeps
    # with the turn (a Responses API record), stored with it or not at all.
    on_store: Callable[[int, int, Any], None] | None = None
    # The user's message's attachments, in order (None on an edit: it keeps its own), and the
    # inline images of a /v1 request, stored as attachments with it.
    attachment_ids: list[int] | None = None
    inline_images: list[tuple[bytes, Any]] = field(default_factory=list)
    tooling: Tooling = NO_TOOLING  # the tools the model may call, the reply's format
    # A turn that gives the model the results of its tool calls: those "tool" messages (the
    # last is `content`'s, stored as the question); empty for a question of the user's.
    results: list[ChatMessage] = field(default_factory=list)

    @property
    def prompt_chars(self) -> int:
        return chars(self.messages)

    @property
    def model_name(self) -> str:
        return f"{self.provider.name}/{self.model}"


# --- 1. prepare ----------------------------------------------------------------------------


def make_title(text: str) -> str:
    """A title from a first message: one line, at most 60 characters, cut between words."""
    text = " ".join(text.split())
    if len(text) <= TITLE_MAX_CHARS:
        return text
    cut = text[: TITLE_MAX_CHARS - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,.;:-") + "…"


_LATEST_MESSAGES = (
    select(Message)
    .where(
        Message.session_id == bindparam("session_id"),
        Message.id < bindparam("before"),
        Message.superseded.is_(False),
        # A tool loop's calls and results are the /v1 client's context, which it re-sends.
        Message.tool_calls.is_(None),
        Message.tool_call_id.is_(None),
    )
    .order_by(Message.id.desc())
    .limit(bindparam("limit"))
)


def load_context(
    session_id: int, config: Mapping[str, Any], reserved: int, before: int = MAX_ID
) -> list[ChatMessage]:
    """The session's latest complete turns before message `before` that fit the budget,
    oldest first; superseded messages are never context.

    One bounded query. Each reply names its question (`reply_to_id`), so turns pair up right
    even when requests to one session overlap. A question without a complete reply (its provider
    call failed, was cut short, or is still being streamed) is left out, so roles alternate
    user/assistant as every provider requires.
    """
    rows = db.session.scalars(
        _LATEST_MESSAGES,
        {"session_id": session_id, "before": before, "limit": config["CONTEXT_MAX_MESSAGES"]},
    ).all()
    replies = {
        m.reply_to_id: m
        for m in rows
        if m.is_bot and not m.incomplete and m.error is None and m.lease_until is None
    }
    budget = config["CONTEXT_MAX_CHARS"] - reserved
    turns: list[ChatMessage] = []
    asked: dict[int, ChatMessage] = {}
    for question in rows:  # newest first
        reply = None if question.is_bot else replies.get(question.id)
        if reply is None:
            continue
        cost = len(question.content) + len(reply.content)
        if cost > budget:
            break
        budget -= cost
        asked[question.id] = {"role": "user", "content": question.content}
        turns += [{"role": "assistant", "content": reply.content}, asked[question.id]]
    turns.reverse()
    images.resend(asked, config)
    return turns


def build_messages(
    context: list[ChatMessage], content: str, session: ChatSession | None = None, pictures=()
) -> list[ChatMessage]:
    """What the provider is sent: the system prompt (the session's own, else SYSTEM_PROMPT),
    the earlier turns, the new message (with its images, `pictures`)."""
    prompt = current_app.config["SYSTEM_PROMPT"]
    if session is not None and session.system_prompt is not None:
        prompt = session.system_prompt
    system: list[ChatMessage] = [{"role": "system", "content": prompt}] if prompt else []
    return system + context + [{"role": "user", "content": attachments.parts(content, pictures)}]


def _invalid(field: str, reason: str) -> None:
    abort(422, message=f"{field}: {reason}", errors={"json": {field: [reason]}})


def _model(user_id: int, model_name: str, options: Options) -> tuple[Provider, str | None, Limits]:
    """The provider and model a name means (UnknownModelError if none), and the user's limits;
    a max_tokens over the model's output cap is a 422; a model the user may not use is refused
    (governance.policy.admit)."""
    provider, model = registry().resolve(model_name)
    if model is not None and options.max_tokens is not None:
        cap = provider.output_cap(model, options)
        if options.max_tokens > cap:
            _invalid("max_tokens", f"Must be at most {cap} for {provider.name}/{model}.")
    return provider, model, admit(user_id, provider.name, model)


def _named_model(
    user: User, model_name: str | None, session: ChatSession | None, options: Options, *fallback
) -> tuple[Provider, str | None, Limits]:
    """The model a request names, else the session's default, else the first of `fallback`
    that is set; none at all is the 422 of a missing field."""
    name = model_name or (session.model if session is not None else None)
    name = name or next((f for f in fallback if f), None)
    if not name:
        _invalid("model", "Missing data for required field.")
    try:
        return _model(user.id, name, options)
    except UnknownModelError:
        message = unknown_model(user.id, name)
        abort(422, message=message, errors={"json": {"model": [message]}})


def prepare(
    user: User,
    content: str,
    model_name: str | None,
    number: int | None,
    options: Options = NO_OPTIONS,
    *,
    streamed: bool = False,
    attachment_ids: list[int] = (),
) -> Turn:
    """Everything the provider call needs, read in one transaction that ends here.

    An unknown model, or a max_tokens over the model's output cap, is a 422; so is no model at
    all (none named, and the session has no default); a model the user may not use is a 403; a
    budget used up a 429 (nothing is stored). A provider that is not configured is not refused
    here: its call fails, and the failure is stored like any other. A user with a budget
    reserves the call's estimate (governance/reservations.py); `streamed` sets its deadline.
    `attachment_ids`: the caller's attachments that go with the message (attachments.store).
    """
    session = find_session(user.id, number) if number is not None else None
    provider, model, limits = _named_model(user, model_name, session, options)
    pictures = attachments.images_of(attachments.resolve(user.id, list(attachment_ids)))
    context = [] if session is None else load_context(session.id, current_app.config, len(content))
    return _planned(
        user,
        provider,
        model,
        content,
        number,
        session,
        context,
        options,
        limits,
        streamed,
        pictures=pictures,
        kind=Kind.NEW if session is None else Kind.CONTINUED,
        attachment_ids=list(attachment_ids),
    )


def _planned(
    user,
    provider,
    model,
    content,
    number,
    session,
    context,
    options,
    limits,
    streamed,
    pictures=(),
    **again,
) -> Turn:
    """The turn of a prepare step, its read transaction ended: the provider may take seconds
    or minutes, and no database connection is held meanwhile. Images the provider cannot take
    are refused (the new message's, a 422) or left out (the earlier messages')."""
    messages = build_messages(context, content, session, pictures)
    turn = Turn(
        user_id=user.id,
        provider=provider,
        model=model,
        content=content,
        number=number,
        session=session,
        messages=images.checked(provider, model, messages, status=422, strip=True),
        asked_at=clock.now(),
        request_id=request_id(),
        options=options,
        **again,
    )
    charging.reserve(turn, limits, streamed)
    db.session.commit()
    return turn


_CURRENT = Message.superseded.is_(False)
_LAST_QUESTION = (
    select(Message)
    .where(
        Message.session_id == bindparam("session_id"),
        Message.is_bot.is_(False),
        Message.tool_call_id.is_(None),  # a tool result is no question of the user's
        _CURRENT,
    )
    .order_by(Message.id.desc())
    .limit(1)
)
_LAST_REPLY = (
    select(Message.model)
    .where(Message.reply_to_id == bindparam("question_id"), Message.model.is_not(None))
    .order_by(Message.id.desc())
    .limit(1)
)


def prepare_again(
    user: User,
    number: int,
    model_name: str | None,
    options: Options = NO_OPTIONS,
    *,
    message_id: int | None = None,
    content: str | None = None,
    streamed: bool = False,
    attachment_ids: list[int] | None = None,
) -> Turn:
    """A turn that answers an existing question again: the session's last one (regenerate),
    or message `message_id` with new words `content` (edit). Its context is what came before
    the question. The model: the one named, else the session's default, else the model of the
    latest reply the question had (superseded or not).

    404 for a session or message the user does not have; 422 for a reply, a superseded
    message, or a session with no question to answer again.
    """
    session = find_session(user.id, number)
    if session is None:
        abort(404, message="Chat session not found")
    if message_id is None:
        question = db.session.scalar(_LAST_QUESTION, {"session_id": session.id})
        if question is None:
            _invalid("chat_id", "The session has no message of yours to answer again.")
    else:
        question = db.session.get(Message, message_id)
        if question is None or question.session_id != session.id:
            abort(404, message="Message not found")
        if question.is_bot or question.tool_call_id is not None:
            _invalid("message_id", "Only your own messages can be edited, not replies.")
        if question.superseded:
            _invalid("message_id", "The message was superseded: edit the current one.")
    content = question.content if content is None else content
    if attachment_ids is None:  # the question's own images go again
        pictures = images.of_message(question.id, current_app.config)
    else:
        given = attachments.resolve(user.id, attachment_ids, message_id=question.id)
        pictures = attachments.images_of(given)
    replaced = db.session.scalar(_LAST_REPLY, {"question_id": question.id})
    provider, model, limits = _named_model(user, model_name, session, options, replaced)
    context = load_context(session.id, current_app.config, len(content), before=question.id)
    kind = Kind.EDIT if message_id is not None else Kind.REGENERATE
    return _planned(
        user,
        provider,
        model,
        content,
        number,
        session,
        context,
        options,
        limits,
        streamed,
        pictures=pictures,
        question=question,
        kind=kind,
        attachment_ids=attachment_ids,
    )


_BY_TRANSCRIPT = (
    select(ChatSession)
    .where(
        ChatSession.user_id == bindparam("user_id"),
        ChatSession.transcript_digest == bindparam("digest"),
    )
    .order_by(ChatSession.changed_at.desc())
    .limit(1)
)


def prepare_conversation(
    user: User,
    messages: list[ChatMessage],
    model_name: str,
    options: Options,
    *,
    number: int | None,
    persist: bool,
    streamed: bool = False,
    retry_key: str | None = None,
    retrying: bool = False,
    inline: list[tuple[bytes, Any]] = (),
    tooling: Tooling = NO_TOOLING,
) -> Turn:
    """A turn whose context is a whole conversation the client sent (OpenAI's contract): the
    provider gets exactly `messages`, and the last one, the user's, is what is stored.

    Which session: `number` when given (made if the user has none); else the user's session
    whose stored transcript is the conversation's earlier user and assistant messages (one
    lookup of its digest); else a new session whose first messages are those. Nothing is
    looked up when the turn is not to be kept. UnknownModelError for an unknown model; a
    conversation over CONTEXT_MAX_CHARS, or a last message that is not the user's or is over
    MAX_MESSAGE_CHARS, is a 422 on `messages` (the client chose the context: it is never
    trimmed).

    A call that fails keeps `retry_key` with its question. A retry of it (`retrying`, with the
    same key) goes to that question's session, and replaces the failed question once stored:
    one call retried by its client leaves one session, whatever each attempt's fate.

    A tool loop's next request ends with the results of the calls the model made (`tool`
    messages) instead of a question: those results are the turn's question, stored in its
    session like one. `tooling` goes to the provider, which may refuse it (or the messages):
    UnsupportedInput, before anything is reserved or stored.

    `inline`: the last message's images, (bytes, attachments.images.ImageInfo) each, stored
    as its attachments (the user's ATTACHMENT_QUOTA_BYTES full: a 409 before any call).
    """
    config = current_app.config
    provider, model, limits = _model(user.id, model_name, options)
    results = tool_loop.results(messages)
    if not results and (not messages or messages[-1]["role"] != "user"):
        _invalid("messages", "The last message must be the user's, or the results of tool calls.")
    content = text_of(messages[-1]["content"])
    if not results and not content.strip() and not images_of(messages[-1]["content"]):
        _invalid("messages", "The last message must not be blank.")
    if len(content) > config["MAX_MESSAGE_CHARS"]:
        _invalid("messages", f"The last message is over {config['MAX_MESSAGE_CHARS']} characters.")
    if chars(messages) > config["CONTEXT_MAX_CHARS"]:
        _invalid("messages", f"The conversation is over {config['CONTEXT_MAX_CHARS']} characters.")
    messages = images.checked(provider, model, messages, status=400, strip=False)
    if model is not None and (tooling != NO_TOOLING or not plain(messages)):
        provider.check(messages, model, tooling)
    if persist and inline:
        attachments.room_for(user.id, sum(info.size for _, info in inline))
    asked = len(messages) - max(len(results), 1)  # where this turn's question begins
    earlier = [m for m in messages[:asked] if m["role"] != "system"]
    session, repeats = None, None
    if persist and retrying and retry_key is not None:
        found = attempts.failed_attempt(user.id, retry_key)
        if found is not None:
            repeats, session = found
            number = session.number
    if session is None and persist and number is not None:
        session = find_session(user.id, number)
    elif session is None and persist and earlier:
        digest = transcript.extend(None, transcript.entries(earlier))
        session = db.session.scalar(_BY_TRANSCRIPT, {"user_id": user.id, "digest": digest})
    if session is not None and any(m.get("tool_calls") for m in earlier):
        messages = tool_loop.with_provider_data(session.id, messages)
    turn = Turn(
        user_id=user.id,
        provider=provider,
        model=model,
        content=content,
        number=number,
        session=session,
        messages=messages,
        asked_at=clock.now(),
        request_id=request_id(),
        kind=Kind.CONVERSATION,
        options=options,
        seed=earlier if session is None else [],
        persist=persist,
        retry_key=retry_key,
        repeats=repeats,
        inline_images=list(inline),
        tooling=tooling,
        results=results,
    )
    charging.reserve(turn, limits, streamed)
    db.session.commit()
    return turn


def asked(turn: Turn) -> list[ChatMessage]:
    """What the turn asks, as messages: the user's question, or the tool results it gives."""
    return tool_loop.asked(turn.content, turn.results)


# --- 2. the provider call ------------------------------------------------------------------


def _ready(turn: Turn) -> str:
    missing = missing_variable(turn.provider, turn.model)
    if missing:
        raise ProviderError(
            f"Model provider {turn.provider.name!r} is not configured: set {missing}", status=503
        )
    turn.started = time.monotonic()
    return turn.model


def complete(turn: Turn) -> Completion:
    model = _ready(turn)
    completion = turn.provider.complete(
        turn.messages, model, turn.options, request_id=turn.request_id, tooling=turn.tooling
    )
    if completion.tool_calls:
        taken = tool_loop.call_ids(turn.messages)
        calls = tool_loop.fresh_calls(completion.tool_calls, taken)
        completion = replace(completion, tool_calls=calls)
    return completion


def open_stream(turn: Turn) -> ReplyStream:
    """The provider's stream, once it has started answering (retried until then)."""
    model = _ready(turn)
    return turn.provider.stream(
        turn.messages, model, turn.options, request_id=turn.request_id, tooling=turn.tooling
    )


# --- 3. store --------------------------------------------------------------------------------


def _latency_ms(turn: Turn) -> int:
    return round((time.monotonic() - turn.started) * 1000) if turn.started else 0


def _digest_after(known: str | None, added: list[tuple[str, str]]):
    """The session's transcript digest once `added` follows it: extended from the digest the
    turn knew, if the session still has that one; else unknown (another turn came between)."""
    column = ChatSession.transcript_digest
    still = column.is_(None) if known is None else column == known
    return case((still, transcript.extend(known, added)), else_=None)


def _commit_question(
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
    message in the winner's session.
    """
    session, question = turn.session, None
    existing, number = session is not None, 0

    def first() -> None:  # the user's row first, as a deletion of the account locks it
        nonlocal existing, number
        existing = session is not None
        if not existing:
            number = new_number(turn.user_id, turn.number)

    def write() -> bool:
        nonlocal session, question
        now = clock.now()
        added = [] if existing else transcript.entries(turn.seed)
        if whole:
            added += tool_loop.whole_turn(asked(turn), reply.content, reply.tool_calls)
        if session is None:
            session = ChatSession(
                user_id=turn.user_id,
                number=number,
                title=make_title(tool_loop.first_text([*turn.seed, *asked(turn)], turn.content)),
                created_at=turn.asked_at,
                changed_at=now,
                updated_at=now,
                transcript_digest=transcript.extend(None, added) if added else None,
            )
        else:
            digest = session.transcript_digest
            session = db.session.merge(session, load=False)
            with db.session.no_autoflush:
                if not _touch_session(turn.user_id, session, now, digest, added):
                    return False  # deleted, or its id now another's
                if turn.repeats is not None:  # a retry: its failed attempt gives way
                    attempts.supersede(turn.repeats, session.id)
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
        if not existing and turn.seed:
            db.session.add(session)
            db.session.flush()
            _add_seed(session, turn)  # the earlier messages first, in their order
        for result in turn.results[:-1]:  # the other results of the turn, in their order
            db.session.add(tool_loop.result_row(session, result, turn.asked_at))
        db.session.add(question)
        if turn.attachment_ids or turn.inline_images:
            db.session.flush()
            _attach(turn, question.id)
        if reply is not None:
            reply.session = session
            reply.reply_to = question
            reply.created_at = now
            db.session.add(reply)
        if whole and turn.on_store is not None:
            db.session.flush()
            turn.on_store(session.id, reply.id, reply)
        return True

    def retry() -> bool:
        nonlocal session
        if existing or not _user_exists(turn.user_id):  # deleted since `prepare`
            return False
        if turn.number is None:  # the counter was behind the user's numbers
            catch_up(turn.user_id)
            db.session.commit()
        session = find_session(turn.user_id, turn.number) if turn.number is not None else None
        return True

    _transaction(turn, usage, write, first=first, retry=retry, ended=ended)
    turn.session, turn.question, turn.reply = session, question, reply
    turn.created = not existing


def _transaction(
    turn: Turn,
    usage: ledger.Entry | None,
    write: Callable[[], bool],
    *,
    first: Callable[[], None] | None = None,
    retry: Callable[[], bool] | None = None,
    ended: bool = True,
) -> None:
    """One transaction of a turn's store, whichever its path: `first()` (a new session's number,
    from the user's row), the call's usage, its budget reservation released (unless the call is
    still under way, not `ended`: a stream's start), then `write()`, which touches the session,
    writes the turn's rows and says whether they were still the turn's. So every turn locks rows
    in one order (the user's, their usage, the session, its messages), the order a deletion
    cascades in, and never deadlocks with another or with a deletion.

    A row that another transaction took or deleted meanwhile (IntegrityError, StaleDataError)
    rolls it back; `retry()`, if given, may then say it is worth another try, up to
    CREATE_ATTEMPTS in all (after which a 503). Whatever else stops it rolls it back too, and
    what the call used still counts on its own: SessionDeleted when `write()` found the rows gone
    or the account went; a Conflict raised by `write()` goes on up.
    """
    for _ in range(CREATE_ATTEMPTS):
        try:
            with db.session.no_autoflush:
                if first is not None:
                    first()
                if usage is not None:
                    usage.add()
            if ended:
                charging.release(turn)
            if not write():
                raise SessionDeleted()
            db.session.commit()
        except (SessionDeleted, Conflict):
            db.session.rollback()
            charging.count_alone(turn, usage)
            raise
        except (IntegrityError, StaleDataError):
            db.session.rollback()
            if retry is not None and retry():
                continue
            charging.count_alone(turn, usage)  # the account went, and its usage with it
            raise SessionDeleted() from None
        if ended:
            charging.released(turn)
        return
    charging.count_alone(turn, usage)
    abort(503, message="Too many concurrent new sessions; try again.", headers={"Retry-After": "1"})


def _attach(turn: Turn, question_id: int) -> None:
    """The question's attachments, in the transaction that stores it."""
    if turn.attachment_ids is not None:
        attachments.attach(turn.user_id, question_id, turn.attachment_ids)
    for position, (data, info) in enumerate(turn.inline_images):
        attachments.add(turn.user_id, data, info, question_id, position, quota=False)


def _user_exists(user_id: int) -> bool:
    return db.session.scalar(select(User.id).where(User.id == user_id)) is not None


_PREVIOUS = aliased(Message)


def _previous(column):
    """`column` of the message just before the one being updated, in its session."""
    return (
        select(column)
        .where(_PREVIOUS.session_id == Message.session_id, _PREVIOUS.id < Message.id)
        .order_by(_PREVIOUS.id.desc())
        .limit(1)
        .scalar_subquery()
    )


_SEED = insert(Message.__table__)


def _add_seed(session: ChatSession, turn: Turn) -> None:
    """The earlier turns a conversation brought, as messages of its new session: one INSERT of
    them all, in order, then one UPDATE that makes each reply answer the question just before
    it. Up to V1_MAX_MESSAGES of them (row by row, a flood of messages held SQLite's write lock
    for a minute)."""
    rows = [
        {
            "session_id": session.id,
            "is_bot": m["role"] == "assistant",
            "content": text_of(m["content"]),
            "created_at": turn.asked_at,
            "superseded": False,
            "incomplete": False,
            "tool_calls": m.get("tool_calls"),
            "tool_call_id": m.get("tool_call_id"),
        }
        for m in turn.seed
    ]
    # One statement executed for every row (a multi-row INSERT on PostgreSQL): compiling a
    # VALUES clause of hundreds of rows would cost more than writing them, lock held.
    db.session.execute(_SEED, rows)
    if any(m["role"] == "assistant" for m in turn.seed[1:]):
        db.session.execute(
            update(Message)
            .where(
                Message.session_id == session.id,
                Message.is_bot.is_(True),
                _previous(_PREVIOUS.is_bot).is_(False),
            )
            .values(reply_to_id=_previous(_PREVIOUS.id))
            .execution_options(synchronize_session=False)
        )


def store(turn: Turn, completion: Completion) -> Message:
    """The user's message and the reply, in one transaction (neither if the turn is not to
    be kept: the reply is then returned unsaved)."""
    charging.account(turn, "ok", completion.prompt_tokens, completion.completion_tokens)
    model = completion.model or turn.model
    counts = {name: getattr(completion, name) for name in USAGE}
    usage, cost = charging.charge(
        turn, model, counts, completion.content, completion.reasoning or ""
    )
    reply = Message(
        is_bot=True,
        content=completion.content,
        model=f"{turn.provider.name}/{model}",
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        reasoning_tokens=completion.reasoning_tokens,
        cached_tokens=completion.cached_tokens,
        reasoning=completion.reasoning,
        options=completion.options,
        finish_reason=completion.finish_reason,
        latency_ms=_latency_ms(turn),
        cost_usd=charging.dollars(cost),
        tool_calls=[dict(call) for call in completion.tool_calls] or None,
    )
    if turn.kind.again:
        _commit_again(turn, reply, usage)
    elif turn.persist:
        _commit_question(turn, reply, whole=True, usage=usage)
        titles.schedule(turn)
    else:
        charging.count_alone(turn, usage)
    return reply


def store_failure(turn: Turn, error: ProviderError) -> None:
    """The model gave nothing: the user's message is stored, flagged with the error (and
    whatever the call used counted, when the provider answered with no usable reply)."""
    charging.account(turn, str(error.status))
    usage = charging.used_without_reply(turn, error.usage)
    if turn.kind is Kind.EDIT:  # the new words are kept, flagged like any failed question
        _commit_again(turn, None, usage, error=error.message)
    elif turn.persist and not turn.kind.again:
        _commit_question(turn, error=error.message, usage=usage)
    else:  # a failed regenerate changes nothing: the earlier reply stays current
        charging.count_alone(turn, usage)


_SUPERSEDE = (
    update(Message)
    .where(
        Message.session_id == bindparam("in_session"),
        Message.id > bindparam("after"),
        Message.id != bindparam("keep"),
        _CURRENT,
    )
    .values(superseded=True)
    .execution_options(synchronize_session=False)
)


def _supersede(turn: Turn, keep: int = 0) -> None:
    """Everything after the turn's question (but message `keep`) is superseded."""
    db.session.execute(
        _SUPERSEDE, {"in_session": turn.session.id, "after": turn.question.id, "keep": keep}
    )


CHANGED = "The conversation changed meanwhile: reload it and try again."


def _still_current(turn: Turn, reply_id: int | None = None) -> bool:
    """Whether the question a turn answers again is still current, with the words it was
    answered for (no edit of it or of an earlier message came meanwhile), and so is its new
    reply `reply_id` (no other regenerate replaced it); for a regenerate, also whether no later
    question came meanwhile."""
    question = db.session.execute(
        select(Message.content).where(
            Message.id == turn.question.id, Message.session_id == turn.session.id, _CURRENT
        )
    ).one_or_none()
    if question is None or question.content != turn.content:
        return False
    if reply_id is not None and db.session.scalar(
        select(Message.superseded).where(
            Message.id == reply_id, Message.session_id == turn.session.id
        )
    ):
        return False
    return turn.kind is not Kind.REGENERATE or not db.session.scalar(
        select(
            exists().where(
                Message.session_id == turn.session.id,
                Message.id > turn.question.id,
                Message.is_bot.is_(False),
                _CURRENT,
            )
        )
    )


def _commit_again(
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
    question = turn.question
    if turn.kind is Kind.EDIT:  # the new words (and the failure, if the call failed)
        changes = {"content": turn.content, "error": error}
    else:  # a regenerate keeps the words; a failure flag goes once there is a new reply
        changes = {"error": None} if supersede else {}

    def write() -> bool:
        if not _touch(turn):
            return False
        if changes:
            db.session.execute(
                update(Message)
                .where(Message.id == question.id, Message.session_id == turn.session.id, _CURRENT)
                .values(changes)
                .execution_options(synchronize_session=False)
            )
        if not _still_current(turn):
            raise Conflict(CHANGED)
        # An edit's images go with its words; a regenerate's once its reply replaces the other.
        if turn.attachment_ids is not None and (turn.kind is Kind.EDIT or supersede):
            _attach(turn, question.id)
        if supersede:
            _supersede(turn)
        if reply is not None:
            reply.session = turn.session
            reply.reply_to_id = question.id
            reply.created_at = clock.now()
            db.session.add(reply)
        return True

    _transaction(turn, usage, write, ended=ended)
    turn.reply = reply


# --- a streamed turn's store steps ---------------------------------------------------------


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
        _commit_again(turn, reply, supersede=turn.kind is Kind.EDIT, ended=False)
        return
    if turn.session is not None:
        turn.digest = turn.session.transcript_digest
    elif turn.seed:
        turn.digest = transcript.extend(None, transcript.entries(turn.seed))
    reply = Message(is_bot=True, content="", model=turn.model_name, incomplete=False, **leased)
    _commit_question(turn, reply, ended=False)


def _own_reply(turn: Turn):
    """The turn's streamed reply, if it is still the stream's own."""
    return and_(
        Message.id == turn.reply.id,
        Message.session_id == turn.session.id,
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
    gone."""
    if not turn.persist:
        return
    values = {
        "content": text,
        "reasoning": reasoning or None,
        "tool_calls": calls or None,
        "lease": _lease(),
    }
    owner = {"reply_id": turn.reply.id, "in_session": turn.session.id, "token": turn.lease_token}
    result = db.session.execute(_SAVE, owner | values)
    db.session.commit()
    turn.saved_at = time.monotonic()
    if result.rowcount != 1:
        raise SessionDeleted()


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
            deleted = db.session.execute(delete(Message).where(_own_reply(turn)))
            if turn.kind is Kind.REGENERATE:  # nothing changes: the earlier reply stays current
                return deleted.rowcount == 1
            return (
                db.session.execute(
                    update(Message).where(_own_question(turn)).values(error=failure.message)
                ).rowcount
                == 1
            )

        _write(turn, entry, flag)
        if turn.kind is not Kind.REGENERATE:
            turn.question.error = failure.message
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
        "latency_ms": _latency_ms(turn),
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

    def write() -> bool:
        if turn.kind.again and not _still_current(turn, turn.reply.id):
            stale.append(True)
        row = values | {"superseded": True} if stale else values
        written = db.session.execute(update(Message).where(_own_reply(turn)).values(**row)).rowcount
        if turn.kind.again and written and not stale:  # it has text: it replaces what came after
            _supersede(turn, keep=turn.reply.id)
            db.session.execute(update(Message).where(_own_question(turn)).values(error=None))
            if turn.kind is Kind.REGENERATE and turn.attachment_ids is not None:
                _attach(turn, turn.question.id)
        if written and failure is None and turn.on_store is not None:
            turn.on_store(turn.session.id, turn.reply.id, SimpleNamespace(**values))
        return written == 1

    _write(
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


def _write(turn: Turn, usage: ledger.Entry | None, messages, added=None) -> None:
    """A streamed turn's last transaction: its usage, the session touched (its transcript
    grown by `added`), then `messages()`, which says whether its rows were still there; rows
    locked in the order every turn and a deletion's cascade take them. SessionDeleted when the
    session (or the account) went meanwhile; the usage counts all the same."""
    _transaction(turn, usage, lambda: _touch(turn, added) and messages())


def _touch(turn: Turn, added: list[tuple[str, str]] | None = None) -> bool:
    """The session changed and was active (now), and its transcript grew by `added` (a whole
    turn); a turn answering again rewrote it, so its digest is unknown. False if it is gone."""
    digest = turn.digest
    if turn.kind.again:
        added, digest = None, _UNKNOWN
    return _touch_session(turn.user_id, turn.session, clock.now(), digest, added)


_UNKNOWN = object()  # a transcript digest that can no longer be known


def _touch_session(user_id: int, session: ChatSession, now, digest, added) -> bool:
    """`session` changed now and its transcript (digest `digest` as the turn knew it) grew by
    `added`, if the row is still the user's session of that number: one UPDATE. False if not
    (deleted, or its id reused by another session)."""
    values = {"changed_at": now, "updated_at": now}
    if digest is _UNKNOWN:
        values["transcript_digest"] = None
    elif added:
        values["transcript_digest"] = _digest_after(digest, added)
    statement = (
        update(ChatSession)
        .where(
            ChatSession.id == session.id,
            ChatSession.user_id == user_id,
            ChatSession.number == session.number,
        )
        .values(values)
        .execution_options(synchronize_session=False)
    )
    return db.session.execute(statement).rowcount == 1


def _own_question(turn: Turn):
    """The question a turn answers, if it is still in the turn's session."""
    return and_(Message.id == turn.question.id, Message.session_id == turn.session.id)
