"""A chat turn's state from `prepare` to its store step (turn.py tells the steps), its kind, and
what every step of it shares."""

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..models import ChatSession, Message
from ..providers import ChatMessage, Options, Provider
from ..providers.base import NO_OPTIONS
from ..providers.tools import NO_TOOLING, Tooling
from . import tool_loop
from .tool_loop import chars

TITLE_MAX_CHARS = 60
INTERRUPTED = "The server stopped before the reply was complete"
CLIENT_CLOSED = 499  # a stream's client went away (nginx's "client closed request")
CHANGED = "The conversation changed meanwhile: reload it and try again."


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


@dataclass(frozen=True)
class NewRow:
    """A row a caller keeps with a turn's whole reply, its values known before the turn is
    stored (a Responses API record): `inserted(ids)` is its INSERT … SELECT (or an UPDATE … FROM
    of a row the call wrote before, such as its claim of a retry key), given the turn's
    `session_id`, `question_id` and `reply_id` as columns of the statement that stores the turn,
    built once (the statements it is a part of are cached by it); `params`, its bound
    parameters."""

    inserted: Callable[[dict[str, Any]], Any]
    params: dict[str, Any]


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
    # What on_store writes, as a row, when its values are known before the store (a whole
    # reply's Responses API record): a plain turn's one statement inserts it (first_turn.py,
    # next_turn.py) instead of calling on_store.
    new_row: NewRow | None = None
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
    def stored_session(self) -> ChatSession:
        """The turn's session, once it has one (stored, or the one it continues)."""
        if self.session is None:
            raise LookupError("The turn has no session yet")
        return self.session

    @property
    def stored_question(self) -> Message:
        """The turn's question, once stored (answered again: from the start)."""
        if self.question is None:
            raise LookupError("The turn's question is not stored yet")
        return self.question

    @property
    def stored_reply(self) -> Message:
        """The turn's reply, once stored (streamed: from the stream's start)."""
        if self.reply is None:
            raise LookupError("The turn's reply is not stored yet")
        return self.reply

    @property
    def session_id(self) -> int:
        return self.stored_session.id

    @property
    def question_id(self) -> int:
        return self.stored_question.id

    @property
    def reply_id(self) -> int:
        return self.stored_reply.id

    @property
    def latency_ms(self) -> int:
        """Since the provider call began, in milliseconds; 0 before it."""
        return round((time.monotonic() - self.started) * 1000) if self.started else 0

    @property
    def model_name(self) -> str:
        return f"{self.provider.name}/{self.model}"


def make_title(text: str) -> str:
    """A title from a first message: one line, at most 60 characters, cut between words."""
    text = " ".join(text.split())
    if len(text) <= TITLE_MAX_CHARS:
        return text
    cut = text[: TITLE_MAX_CHARS - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,.;:-") + "…"


def asked(turn: Turn) -> list[ChatMessage]:
    """What the turn asks, as messages: the user's question, or the tool results it gives."""
    return tool_loop.asked(turn.content, turn.results)
