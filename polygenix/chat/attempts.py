"""A /v1 call retried by its client: the failed attempt it repeats.

A failed /v1 question keeps the call's retry key (openai_api: a digest of its Idempotency-Key,
or of its body for the official SDKs' retries). A retry finds the latest such question of the
user, still current and recent, through a partial index, goes to its session, and supersedes
it once its own question is stored: one call, one session, one current question.
"""

from datetime import timedelta

from sqlalchemy import and_, bindparam, or_, select, update

from .. import clock
from ..extensions import db
from ..models import ChatSession, Message

# A client retries a call within its timeouts (the official SDKs: 10 minutes an attempt).
RETRY_WINDOW = timedelta(hours=1)

_FAILED = (
    select(Message.id, ChatSession)
    .join(ChatSession, ChatSession.id == Message.session_id)
    .where(
        Message.retry_key == bindparam("key"),
        ChatSession.user_id == bindparam("user_id"),
        Message.error.is_not(None),
        Message.superseded.is_(False),
        Message.created_at >= bindparam("since"),
    )
    .order_by(Message.id.desc())
    .limit(1)
)


def failed_attempt(user_id: int, key: str) -> tuple[int, ChatSession] | None:
    """The failed question of the user's call with this retry key, and its session; or None."""
    since = clock.now() - RETRY_WINDOW
    found = db.session.execute(_FAILED, {"key": key, "user_id": user_id, "since": since}).first()
    return None if found is None else (found[0], found[1])


_ASKED_AT = select(Message.created_at).where(Message.id == bindparam("question_id"))


def supersede(question_id: int, session_id: int) -> None:
    """The failed question a retry repeats gives way, in the retry's storing transaction; so
    do the other tool results it came with (stored just before it, at the same time)."""
    failed = and_(Message.id == question_id, Message.error.is_not(None))
    results = and_(
        Message.id < question_id,
        Message.tool_call_id.is_not(None),
        Message.is_bot.is_(False),
        Message.created_at == _ASKED_AT.scalar_subquery(),
    )
    db.session.execute(
        update(Message)
        .where(Message.session_id == session_id, or_(failed, results))
        .values(superseded=True)
        .execution_options(synchronize_session=False),
        {"question_id": question_id},
    )
