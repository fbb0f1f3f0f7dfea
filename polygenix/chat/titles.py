"""Titles by a model: with TITLE_MODEL set, a new session's first title (its first message cut
to 60 characters, see turn.make_title) is replaced by a short one that model writes.

The model is asked off the request path, once the session's first reply is stored: the reply is
never delayed, and the better title shows up in the session's next read (its `changed_at` moves,
so history ETags change). A rename by the user in the meantime wins: the title is written only
where the session still has the title it was made with. Any failure (the provider's, a timeout,
an empty or unusable answer, the database's) is logged, without the conversation's text, and
leaves the first title.

The call is the server's, not the user's: it is not checked against the user's model allowlist
and is not counted in their usage or budgets.
"""

import logging
import re
import threading
from collections import deque
from collections.abc import Callable
from functools import partial

from flask import Flask, current_app
from sqlalchemy import update

from .. import clock
from ..config import ConfigError
from ..extensions import db
from ..models import ChatSession
from ..provider_registry import missing_variable, registry
from ..providers import ChatMessage, Options, Provider, ProviderError, UnknownModelError
from . import turn as turns

log = logging.getLogger(__name__)
EXTENSION = "polygenix.titles"
THREADS = 2
# Titles waiting beyond this many (a provider slower than new sessions come) are not asked.
MAX_WAITING = 100
# A title is a few words; a model that reasons is left its own cap (it thinks before it writes).
TITLE_MAX_TOKENS = 64
# The conversation is sent clipped: its start says what it is about.
CLIP_CHARS = 2000
INSTRUCTIONS = (
    "Write a title for the conversation below: at most six words, in the conversation's "
    "language. Answer with the title alone, without quotes or a final full stop."
)
_MARKUP = re.compile(r"\*\*|__|`")
_LINE_START = re.compile(r"^(?:#+|[-*>]|\d+\.)\s+")
_LABEL = re.compile(r"^(?:chat |session |conversation )?title\s*[:\-–—]\s*", re.I)
_QUOTES = " \t\"'“”‘’«»„*_"


class Titler:
    """TITLE_MODEL's provider and model, and the threads that ask it for titles.

    At most THREADS threads, started when a job comes and ended when none is left. They are
    daemons: a call still waiting on its provider never holds up the process's exit (the
    session then keeps its first title).
    """

    def __init__(self, app: Flask, provider: Provider, model: str):
        self.app = app
        self.provider = provider
        self.model = model
        self._jobs: deque[Callable[[], None]] = deque()
        self._threads = 0
        self._pending = 0
        self._changed = threading.Condition()

    def submit(self, job: Callable[[], None]) -> None:
        with self._changed:
            if len(self._jobs) >= MAX_WAITING:
                log.warning("no title asked: %s titles already wait", MAX_WAITING)
                return
            self._jobs.append(job)
            self._pending += 1
            if self._threads < THREADS:
                self._threads += 1
                threading.Thread(target=self._work, name="titles", daemon=True).start()

    def wait(self, timeout: float) -> bool:
        """Whether every job submitted is done within `timeout` seconds (for tests)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._pending == 0, timeout)

    def _work(self) -> None:
        while True:
            with self._changed:
                if not self._jobs:
                    self._threads -= 1
                    return
                job = self._jobs.popleft()
            try:
                with self.app.app_context():
                    job()
            except Exception as e:  # never out of the thread: the first title stays
                log.error("a title job failed: %s", type(e).__name__)
            finally:
                with self._changed:
                    self._pending -= 1
                    self._changed.notify_all()


def init_titles(app: Flask) -> None:
    """Resolve TITLE_MODEL (after the providers): a model PolyGenix does not know, or whose
    provider is not configured, stops the app here."""
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
    app.extensions[EXTENSION] = Titler(app, provider, model)


def schedule(turn: "turns.Turn") -> None:
    """Ask for a title of the session `turn` made, once its first reply is stored; nothing for
    a turn that continued a session, or with no TITLE_MODEL."""
    titler = current_app.extensions.get(EXTENSION)
    if titler is None or not turn.created:
        return
    said = [*turn.seed, ("user", turn.content), ("assistant", turn.reply.content)]
    conversation = "\n\n".join(f"{role}: {text[:CLIP_CHARS]}" for role, text in said)
    messages: list[ChatMessage] = [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": conversation},
    ]
    titler.submit(
        partial(_retitle, titler, turn.session.id, turn.session.title, messages, turn.request_id)
    )


def _retitle(titler: Titler, session_id: int, shown: str, messages, request_id) -> None:
    provider, model = titler.provider, titler.model
    # Only a model without its own larger cap (one that does not reason) is held to a few words.
    plain = provider.output_cap(model) <= provider.settings.max_output_tokens
    options = Options(max_tokens=TITLE_MAX_TOKENS if plain else None)
    try:
        answer = provider.complete(messages, model, options, request_id=request_id).content
    except ProviderError as e:
        log.warning(
            "no title for session %s: %s/%s failed (%s)", session_id, provider.name, model, e.status
        )
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
    title = turns.make_title(line)
    return title if any(c.isalnum() for c in title) else ""
