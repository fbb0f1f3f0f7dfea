"""A turn's first step: resolve the model, find the session (or plan a new one), load the bounded
context, reserve the call's budget, and end the reads. No provider is called and nothing of the
turn is written.

On PostgreSQL the reads are sent one by one in autocommit (`database.alone`), with no `BEGIN` nor
`COMMIT` around them; the caller and their own limits were read before, by one query sent alone too
(auth/), on the same connection where the view says it prepares a turn (`required(prepares=True)`).
They lose nothing by it. Under READ COMMITTED, PostgreSQL's default, which PolyGenix leaves as it
is, each statement of a transaction reads its own snapshot: the caller, their limits, the session,
its context and its attachments were never read as of one moment, and none of these reads locks a
row. Nor does any of them need another's snapshot (which a server set to REPEATABLE READ gave them
before): what one finds changed by the next (a session deleted, a message added, limits set
meanwhile) is what a request a moment later would have read, and the turn's store checks what it
writes against the rows as they are then (chat/commit.py, first_turn.py, next_turn.py). The reads
that must agree with a write, what the user used and holds in flight against the budget, are the
reservation's, in its own transaction under the user's row lock (governance/reservations.py): before
it, the reads' autocommit ends (`database.ended`), so the reservation begins a transaction of its
own. Without Redis the rate-limit hit is counted as that happens (limits.py): one upsert, itself a
transaction of one statement, as Redis counts a hit.

Three ways in: a question of the user's (`prepare`), an existing question answered again
(`prepare_again`: regenerate or edit), and a whole conversation a /v1 client sent
(`prepare_conversation`, for Chat Completions and Responses).
"""

from collections.abc import Sequence
from typing import Any, NoReturn

from flask import current_app
from flask_smorest import abort
from sqlalchemy import bindparam, select

from .. import clock, database
from ..attachments import store as attachments
from ..auth.access import missing
from ..extensions import db
from ..governance import charging
from ..governance.policy import Limits, admit, unknown_model
from ..logs import request_id
from ..models import ChatSession, Message, User
from ..provider_registry import registry
from ..providers import ChatMessage, Options, Provider, UnknownModelError
from ..providers.base import NO_OPTIONS
from ..providers.messages import images_of, plain, text_of
from ..providers.tools import NO_TOOLING, Tooling
from . import attempts, images, tool_loop, transcript
from .context import build_messages, load_context
from .history import find_session
from .session_rows import CURRENT
from .tool_loop import chars
from .turn_state import Kind, Turn


def _invalid(field: str, reason: str) -> NoReturn:
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
    attachment_ids: Sequence[int] = (),
) -> Turn:
    """Everything the provider call needs, read before the provider is called (see above).

    An unknown model, or a max_tokens over the model's output cap, is a 422; so is no model at
    all (none named, and the session has no default); a model the user may not use is a 403; a
    budget used up a 429 (nothing is stored). A provider that is not configured is not refused
    here: its call fails, and the failure is stored like any other. A user with a budget
    reserves the call's estimate (governance/reservations.py); `streamed` sets its deadline.
    `attachment_ids`: the caller's attachments that go with the message (attachments.store).
    """
    database.alone(db.session())  # reads, each its own transaction (see the module's docstring)
    session = find_session(user.id, number) if number is not None else None
    provider, model, limits = _named_model(user, model_name, session, options)
    pictures = attachments.given_images(user.id, list(attachment_ids))
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
    """The turn of a prepare step, its reads ended: the provider may take seconds
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
    _reserve(turn, limits, streamed)
    return turn


def _reserve(turn: Turn, limits: Limits, streamed: bool) -> None:
    """The preparation's end: its reads' autocommit ended, the call's budget reserved (a
    transaction of its own), and committed; no connection is held across the provider call."""
    database.ended(db.session())
    charging.reserve(turn, limits, streamed)
    db.session.commit()


_LAST_QUESTION = (
    select(Message)
    .where(
        Message.session_id == bindparam("session_id"),
        Message.is_bot.is_(False),
        Message.tool_call_id.is_(None),  # a tool result is no question of the user's
        CURRENT,
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


def _nothing_to_answer(user_id: int, number: int) -> NoReturn:
    """A session found with no question of the user's in it: a 422, unless the session went
    after it was read (each read its own snapshot), the account perhaps with it (`missing`)."""
    if find_session(user_id, number) is None:
        missing(user_id, "Chat session not found")
    _invalid("chat_id", "The session has no message of yours to answer again.")


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

    404 for a session or message the user does not have (401 once their account is gone:
    `missing`); 422 for a reply, a superseded message, or a session with no question to answer
    again.
    """
    database.alone(db.session())  # reads, each its own transaction (see the module's docstring)
    session = find_session(user.id, number)
    if session is None:
        missing(user.id, "Chat session not found")
    if message_id is None:
        question = db.session.scalar(_LAST_QUESTION, {"session_id": session.id})
        if question is None:
            _nothing_to_answer(user.id, number)
    else:
        question = db.session.get(Message, message_id)
        if question is None or question.session_id != session.id:
            missing(user.id, "Message not found")
        if question.is_bot or question.tool_call_id is not None:
            _invalid("message_id", "Only your own messages can be edited, not replies.")
        if question.superseded:
            _invalid("message_id", "The message was superseded: edit the current one.")
    content = question.content if content is None else content
    if attachment_ids is None:  # the question's own images go again
        pictures = images.of_message(question.id, current_app.config)
    else:
        pictures = attachments.given_images(user.id, attachment_ids, message_id=question.id)
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
    inline: Sequence[tuple[bytes, Any]] = (),
    tooling: Tooling = NO_TOOLING,
    session: ChatSession | None = None,
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
    `session`: the user's session number `number`, when the caller has already read it.
    """
    database.alone(db.session())  # reads, each its own transaction (see the module's docstring)
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
    session, repeats = (session if persist else None), None
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
    _reserve(turn, limits, streamed)
    return turn
