"""A user's sessions as JSON or a Markdown transcript (export over the API and the CLI).

Exporting all of a user's sessions over the API is streamed: the sessions are read BATCH at a
time, each batch in a transaction of its own, and written out as they come (one JSON document,
or a zip of one Markdown file per session), so an account of any size costs one batch's memory.
"""

import json
import zipfile
from collections.abc import Iterable, Iterator

from sqlalchemy import and_, or_, select

from ..extensions import db
from ..models import ChatSession, User
from .history import with_messages
from .schemas import ChatSessionResponseSchema

FORMATS = ("markdown", "json")


def sessions_of(user: User) -> list[dict]:
    """Every session of the user, oldest first, each with its messages."""
    sessions = db.session.scalars(
        select(ChatSession)
        .where(ChatSession.user_id == user.id)
        .order_by(ChatSession.created_at, ChatSession.id)
    ).all()
    return with_messages(sessions)


def session_json(session: dict) -> str:
    return _dumps(ChatSessionResponseSchema().dump(session))


def user_json(user: User, sessions: list[dict]) -> str:
    return _dumps(
        {
            "user": {
                "id": user.id,
                "name": user.name,
                "email": user.email,
                "created_at": user.created_at.isoformat(),
            },
            "sessions": ChatSessionResponseSchema(many=True).dump(sessions),
        }
    )


def _dumps(body) -> str:
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def as_markdown(sessions: list[dict]) -> str:
    return "\n".join(_session_markdown(s) for s in sessions)


def _session_markdown(session: dict) -> str:
    models = sorted({m.model for m in session["messages"] if m.model})
    lines = [
        f"# {session['title']}",
        "",
        f"- Chat: {session['number']}",
        f"- Created: {_when(session['created_at'])}",
        f"- Model: {', '.join(models) if models else '-'}",
        "",
    ]
    for message in session["messages"]:
        who = message.model or "Assistant" if message.is_bot else "You"
        flags = []
        if message.superseded:
            flags.append("superseded")
        if message.incomplete:
            flags.append("incomplete")
        if message.error and not message.is_bot:
            flags.append("no reply: " + message.error)
        if message.tool_call_id is not None:
            who = f"Tool result ({message.tool_call_id})"
        note = f" ({'; '.join(flags)})" if flags else ""
        lines += [f"## {who} · {_when(message.created_at)}{note}", "", message.content, ""]
        lines += [
            f"[image: {a['media_type']}, {a['bytes']} bytes, {a['width']}×{a['height']}, "
            f"attachment {a['id']}]\n"
            for a in getattr(message, "shown_attachments", None) or ()
        ]
        for call in message.tool_calls or ():
            lines += [f"- Calls `{call['name']}` ({call['id']}): `{call['arguments']}`", ""]
    return "\n".join(lines)


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


# --- everything, streamed -----------------------------------------------------------------

BATCH = 50


def all_sessions(
    user_id: int, include_superseded: bool = False, include_tools: bool = False
) -> Iterator[dict]:
    """Every session of the user, oldest first, each with its shown messages (superseded ones
    too when asked; a reply still being streamed never), read BATCH sessions at a time.

    Each batch is two queries (its sessions after the last one read, then their messages) in a
    transaction that ends before it is handed on: no transaction stays open while the client
    reads. A session deleted meanwhile is simply not in a later batch.
    """
    after = None
    while True:
        statement = select(ChatSession).where(ChatSession.user_id == user_id)
        if after is not None:
            created, last_id = after
            statement = statement.where(
                or_(
                    ChatSession.created_at > created,
                    and_(ChatSession.created_at == created, ChatSession.id > last_id),
                )
            )
        batch = db.session.scalars(
            statement.order_by(ChatSession.created_at, ChatSession.id).limit(BATCH)
        ).all()
        sessions = with_messages(batch, include_superseded, include_tools)
        db.session.commit()
        yield from sessions
        if len(batch) < BATCH:
            return
        after = batch[-1].created_at, batch[-1].id


def json_document(sessions: Iterable[dict]) -> Iterator[str]:
    """`{"sessions": [...]}`, each session as GET /api/ai_chat/{chat_id} shows it, one per
    line, written as they come."""
    schema = ChatSessionResponseSchema()
    yield '{"sessions": ['
    for n, session in enumerate(sessions):
        yield ("," if n else "") + "\n" + json.dumps(schema.dump(session), ensure_ascii=False)
    yield "\n]}\n"


class _Pipe:
    """Where zipfile writes, until the response takes it. With no tell() or seek(), zipfile
    writes a stream (sizes after each file's data), which is what a response can carry."""

    def __init__(self):
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:  # zipfile never closes a file it was given
        pass

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


def markdown_zip(sessions: Iterable[dict]) -> Iterator[bytes]:
    """A zip of one Markdown transcript per session (`polygenix-chat-<number>.md`, dated when
    the session began), each file sent once written."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w") as archive:
        for session in sessions:
            name = f"polygenix-chat-{session['number']}.md"
            info = zipfile.ZipInfo(name, session["created_at"].timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, _session_markdown(session))
            yield pipe.take()
    yield pipe.take()
