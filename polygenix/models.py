"""Database models: users, their chat sessions, and one row per message.

No identifier is ever handed out twice: on SQLite, tables with integer ids use AUTOINCREMENT
(without it SQLite reuses the highest id once its row is deleted); PostgreSQL's sequences never
go back.
"""

import secrets
from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .auth.passwords import check_password, hash_password
from .extensions import db

# Ids and session numbers are 32-bit integers on every database.
MAX_ID = 2**31 - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Stores naive UTC on every database and always reads back an aware UTC datetime.

    SQLite has no time zones, so without this the API would emit offsets on PostgreSQL only.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=UTC) if value is not None else None


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased (see normalize_email), so the unique index is case-insensitive.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=false())
    # In every token (`acct`): a token is for this account, not for whichever account holds this
    # id. A new password (change or reset) draws a new one, which revokes all earlier tokens.
    token_key: Mapped[str] = mapped_column(String(32), default=lambda: new_token_key())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The highest session number the user has had: a new session without a number takes the
    # next, counted up in its own transaction, so concurrent creations never collide.
    last_session_number: Mapped[int] = mapped_column(default=0, server_default=text("0"))

    @property
    def password(self):
        raise AttributeError("password is write-only")

    @password.setter
    def password(self, value: str) -> None:
        self.password_hash = hash_password(value)

    def change_password(self, value: str) -> None:
        """A new password: every token issued before it stops working."""
        self.password = value
        self.token_key = new_token_key()

    def verify_password(self, value: str) -> bool:
        return check_password(self.password_hash, value)

    def __repr__(self) -> str:
        return f"<User {self.id}>"


def new_token_key() -> str:
    return secrets.token_hex(16)


def normalize_email(email: str) -> str:
    return email.strip().lower()


class ChatSession(db.Model):
    """A conversation. `number` is its id within its owner's account, the API's `chat_id`."""

    __tablename__ = "chat_sessions"
    __table_args__ = (
        UniqueConstraint("user_id", "number"),
        # A user's sessions, newest first.
        Index("ix_chat_sessions_user_id_created_at", "user_id", "created_at", "id"),
        # A user's sessions, latest activity first (ties by number).
        Index("ix_chat_sessions_user_id_updated_at", "user_id", "updated_at", "number"),
        # A user's latest change, for the history's ETag: one index lookup.
        Index("ix_chat_sessions_user_id_changed_at", "user_id", "changed_at"),
        # A conversation re-sent whole by an OpenAI client finds its session in one lookup.
        Index("ix_chat_sessions_user_id_transcript", "user_id", "transcript_digest"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    number: Mapped[int]
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The time of its latest message (its creation until it has one): history's order.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The session's own instructions, in place of SYSTEM_PROMPT; null: SYSTEM_PROMPT.
    system_prompt: Mapped[str | None] = mapped_column(Text)
    # The model a request for this session uses when it names none.
    model: Mapped[str | None] = mapped_column(String(200))
    # When anything shown of the session last changed (a stored turn, a rename): with the
    # number of sessions, a user's history's ETag.
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A chained SHA-256 of the session's complete turns (user and assistant texts, in order):
    # see chat/transcript.py. Null when it cannot be known (turns that overlapped).
    transcript_digest: Mapped[str | None] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"<ChatSession {self.id} user={self.user_id} number={self.number}>"


class Message(db.Model):
    __tablename__ = "messages"
    # A session's messages in order.
    __table_args__ = (
        Index("ix_messages_session_id_id", "session_id", "id"),
        # Only the few replies being streamed: the sweep finds them; a query for the shown
        # messages (lease_until IS NULL) is never sent through it to scan every message.
        Index(
            "ix_messages_lease_until",
            "lease_until",
            sqlite_where=text("lease_until IS NOT NULL"),
            postgresql_where=text("lease_until IS NOT NULL"),
        ),
        # Only the few failed questions a client may retry: a retry finds its earlier attempt.
        Index(
            "ix_messages_retry_key",
            "retry_key",
            sqlite_where=text("retry_key IS NOT NULL"),
            postgresql_where=text("retry_key IS NOT NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    is_bot: Mapped[bool]
    content: Mapped[str] = mapped_column(Text)
    # The resolved `provider/model` that wrote a reply; null on the user's own messages.
    model: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # On a user message whose model call failed, or a reply cut short: why. Such a turn stays
    # out of later context.
    error: Mapped[str | None] = mapped_column(Text)
    # On replies: the user's message it answers.
    reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    # Answered again (regenerate) or followed by an edited question: kept, but out of context,
    # search, counts and (unless asked for) history.
    superseded: Mapped[bool] = mapped_column(default=False, server_default=false())
    # A streamed reply that ended early (provider failure or client disconnect): partial text.
    incomplete: Mapped[bool] = mapped_column(default=False, server_default=false())
    # On replies: what the provider reported.
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    finish_reason: Mapped[str | None] = mapped_column(String(40))
    latency_ms: Mapped[int | None]
    # On replies: the model's reasoning, kept apart from the answer and never sent back as
    # context; reasoning tokens (counted in completion_tokens too) and cached prompt tokens;
    # the generation options sent.
    reasoning: Mapped[str | None] = mapped_column(Text)
    reasoning_tokens: Mapped[int | None]
    cached_tokens: Mapped[int | None]
    options: Mapped[dict | None] = mapped_column(JSON)
    # On replies: what the reply cost in US dollars; null when its model's price is unknown.
    cost_usd: Mapped[float | None] = mapped_column(Float)
    # A streamed reply being written: its text is saved as it arrives, and the stream renews
    # this lease with each save. Past it with no renewal, the stream died (a worker killed
    # mid-stream) and a sweep flags the reply incomplete. Null once the reply is finished.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The stream's own secret while it writes the reply: every write of the stream names it,
    # so none ever lands in a row that stopped being the stream's (flagged by the sweep, or
    # another row that took a reused id).
    lease_token: Mapped[str | None] = mapped_column(String(32))
    # On a /v1 question whose call failed: what a retry of the same call carries (a digest of
    # its Idempotency-Key, or of its body), so the retry lands in this question's session.
    retry_key: Mapped[str | None] = mapped_column(String(64))
    # A reply that called tools: its calls ([{"id", "name", "arguments"[, "provider_data"]}]),
    # its text often "". A tool result (is_bot false): the call it answers. Neither is shown
    # in history unless asked for (include_tools), nor is either ever a native turn's context.
    tool_calls: Mapped[list | None] = mapped_column(JSON(none_as_null=True))
    tool_call_id: Mapped[str | None] = mapped_column(String(200))

    # Many-to-one only: a session's messages are always queried with a limit, never loaded whole.
    session: Mapped[ChatSession] = relationship()
    reply_to: Mapped["Message | None"] = relationship(remote_side=[id])

    def __repr__(self) -> str:
        return f"<Message {self.id} session={self.session_id} bot={self.is_bot}>"


class StoredResponse(db.Model):
    """A Responses API response kept (`store`): a turn of one of its owner's sessions, with the
    input items and the response object as the API returned them. It goes with its question
    (and so with its session and its owner's account); a continuation names the one it
    continues. A response under way that a client may retry holds its retry key from before
    the provider call (no session yet); a failed one has its question and no reply."""

    __tablename__ = "responses"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    # `resp_` and 48 random hex digits: the id the API hands out (never guessable).
    public_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True
    )
    # The user's message (or the last function output) the response answers.
    question_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    reply_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    # The response this one continues (`previous_response_id`); null once that one is deleted.
    previous_id: Mapped[int | None] = mapped_column(
        ForeignKey("responses.id", ondelete="SET NULL"), index=True
    )
    # The digest of the call's Idempotency-Key (or body), while a retry may come for it.
    retry_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    items: Mapped[list] = mapped_column(JSON)  # the input items, each with its id
    body: Mapped[dict] = mapped_column(JSON)  # the response object


class ApiKey(db.Model):
    """A personal API key: a bearer credential for the chat endpoints and /v1, never for
    account management. Only its SHA-256 is kept; deleting it revokes it."""

    __tablename__ = "api_keys"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the key, in hex
    prefix: Mapped[str] = mapped_column(
        String(12)
    )  # the key's first characters, to tell keys apart
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class UserLimits(db.Model):
    """The models and budgets an admin set for one user; a null field follows the default
    (MODEL_ALLOWLIST, TOKEN_BUDGET, COST_BUDGET). No row: all defaults."""

    __tablename__ = "user_limits"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    models: Mapped[list | None] = mapped_column(JSON(none_as_null=True))  # patterns
    token_budget: Mapped[str | None] = mapped_column(String(40))  # N/period or unlimited
    cost_budget: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsageDaily(db.Model):
    """One user's usage of one model on one UTC day, added to as each reply is stored: what
    budgets and reports read (never the messages). A user's rows go with their account."""

    __tablename__ = "usage_daily"
    __table_args__ = (Index("ix_usage_daily_day", "day"),)

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    calls: Mapped[int]
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    # Whole nano-dollars of the replies with a known price; null while none had one.
    cost_nanousd: Mapped[int | None] = mapped_column(BigInteger)


class BudgetReservation(db.Model):
    """What a call in flight of a user with a budget may use (its prompt's estimate and its
    output cap, priced), held from before the provider is called until its usage is stored:
    other calls are admitted against it (governance/reservations.py). A worker that dies
    mid-call leaves it behind until `expires_at`, the call's deadline."""

    __tablename__ = "budget_reservations"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    # Whole nano-dollars; null when the model's price is unknown (it costs nothing then).
    cost_nanousd: Mapped[int | None] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RevokedToken(db.Model):
    """A revoked token (`jti`) or token family (`family:<fam>`), kept until its tokens would
    have expired anyway. Always written here; with REDIS_URL, to Redis as well."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # When: a refresh token spent moments ago may come back once more (a retry, a second tab).
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RateLimitCount(db.Model):
    """A fixed-window rate-limit count, for when there is no Redis: every worker and host that
    shares the database shares the count."""

    __tablename__ = "rate_limit_counts"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256, in hex
    count: Mapped[int]
    # Seconds since the epoch when the window ends.
    expires_at: Mapped[float] = mapped_column(Float, index=True)
