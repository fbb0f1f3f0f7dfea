"""Titles by a model: with TITLE_MODEL set, a new session's first title (its first message cut
to 60 characters, see turn_state.make_title) is replaced by a short one that model writes.

The model is asked by a background job (polygenix/jobs), enqueued once the session's first reply
is stored: the reply is never delayed, a title asked for survives a restart or a crash of the
worker, and the better title shows up in the session's next read (its `changed_at` moves, so
history ETags change). The job holds the session's id, never its text: it reads the first
messages when it runs. A rename by the user in the meantime wins: the title is written only
where the session still has the title it was made with. A failure worth another try (the
provider's 429, 5xx or timeout, after its own retries; the database's) is retried with backoff;
one that would fail again (a refused request, an unusable answer) leaves the first title. Each
failure is logged without the conversation's text.

The call is the server's, not the user's: it is not checked against the user's model allowlist
and is not counted in their usage or budgets.
"""

import logging
import re

from flask import Flask, current_app
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from .. import clock, jobs
from ..config import ConfigError
from ..extensions import db
from ..models import ChatSession, Message
from ..provider_registry import missing_variable, registry
from ..providers import ChatMessage, Options, Provider, ProviderError, UnknownModelError
from .turn_state import Turn, make_title

log = logging.getLogger(__name__)
EXTENSION = "polygenix.titles"
JOB = "title"
# A title is a few words; a model that reasons is left its own cap (it thinks before it writes).
TITLE_MAX_TOKENS = 64
# The conversation is sent clipped: its start says what it is about.
CLIP_CHARS = 2000
FIRST_MESSAGES = 20
INSTRUCTIONS = (
    "Write a title for the conversation below: at most six words, in the conversation's "
    "language. Answer with the title alone, without quotes or a final full stop."
)
_MARKUP = re.compile(r"\*\*|__|`")
_LINE_START = re.compile(r"^(?:#+|[-*>]|\d+\.)\s+")
_LABEL = re.compile(r"^(?:chat |session |conversation )?title\s*[:\-–—]\s*", re.I)
_QUOTES = " \t\"'“”‘’«»„*_"


class Titler:
    """TITLE_MODEL's provider and model."""

    def __init__(self, provider: Provider, model: str):
        self.provider = provider
        self.model = model


def init_titles(app: Flask) -> None:
    """Resolve TITLE_MODEL (after the providers): a model PolyGenix does not know, or whose
    provider is not configured, stops the app here."""
    jobs.register(app, JOB, _retitle)
    name = app.config.get("TITLE_MODEL")
    if not name:
        return
    with app.app_context():
        try:
            provider, model = registry().resolve(name)
        except UnknownModelError as e:
            raise ConfigError(f"TITLE_MODEL: {e}") from None
        missing = missing_variable(provider, model)
    if missing:
        raise ConfigError(f"TITLE_MODEL {name!r} cannot be used until {missing} is set")
    if model is None:  # a provider without a default model misses that setting: never here
        raise ConfigError(f"TITLE_MODEL {name!r} names no model")
    app.extensions[EXTENSION] = Titler(provider, model)


def schedule(turn: Turn) -> None:
    """Ask for a title of the session `turn` made, once its first reply is stored; nothing for
    a turn that continued a session, or with no TITLE_MODEL. Never fails the turn: a database
    that fails here costs the title, which is logged."""
    if current_app.extensions.get(EXTENSION) is None or not turn.created:
        return
    payload = {
        "session_id": turn.session_id,
        "title": turn.stored_session.title,
        "request_id": turn.request_id,
    }
    try:
        jobs.enqueue(JOB, payload)
    except SQLAlchemyError as e:
        db.session.rollback()
        log.error("no title asked for session %s: %s", turn.session_id, type(e).__name__)


def conversation(session_id: int) -> str:
    """The session's first messages, each clipped, as the title model is sent them."""
    rows = db.session.execute(
        select(Message.is_bot, Message.content)
        .where(Message.session_id == session_id, Message.superseded.is_(False))
        .order_by(Message.id)
        .limit(FIRST_MESSAGES)
    ).all()
    said = [("assistant" if is_bot else "user", text) for is_bot, text in rows if text]
    return "\n\n".join(f"{role}: {text[:CLIP_CHARS]}" for role, text in said)


def _retitle(payload: dict) -> None:
    titler = current_app.extensions.get(EXTENSION)
    session_id, shown = payload["session_id"], payload["title"]
    if titler is None:
        log.warning("no title for session %s: TITLE_MODEL is no longer set", session_id)
        return
    text = conversation(session_id)
    db.session.commit()  # no transaction is held while the model answers
    if not text:
        return  # the session was deleted meanwhile
    messages: list[ChatMessage] = [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": text},
    ]
    provider, model = titler.provider, titler.model
    # Only a model without its own larger cap (one that does not reason) is held to a few words.
    plain = provider.output_cap(model) <= provider.settings.max_output_tokens
    options = Options(max_tokens=TITLE_MAX_TOKENS if plain else None)
    try:
        answer = provider.complete(
            messages, model, options, request_id=payload.get("request_id")
        ).content
    except ProviderError as e:
        log.warning(
            "no title for session %s: %s/%s failed (%s)", session_id, provider.name, model, e.status
        )
        if e.retryable or e.status in (429, 503, 504):
            raise jobs.JobError(f"{provider.name}/{model} failed ({e.status})") from None
        return
    title = clean(answer)
    if not title:
        log.warning("no title for session %s: %s/%s gave none", session_id, provider.name, model)
        return
    db.session.execute(
        update(ChatSession)
        .where(ChatSession.id == session_id, ChatSession.title == shown)
        .values(title=title, changed_at=clock.now())
    )
    db.session.commit()


def clean(answer: str) -> str:
    """The title in a model's answer: its first line without markdown, quotes or a "Title:"
    label, at most 60 characters; empty when nothing like a title is left."""
    line = next((line for line in answer.splitlines() if line.strip()), "")
    line = _LINE_START.sub("", _MARKUP.sub("", line.strip()))
    line = _LABEL.sub("", line.strip(_QUOTES)).strip(_QUOTES).rstrip(".")
    title = make_title(line)
    return title if any(c.isalnum() for c in title) else ""
