"""A user's sessions as JSON or a Markdown transcript (export over the API and the CLI)."""

import json

from sqlalchemy import select

from ..extensions import db
from ..models import ChatSession, User
from .history import session_with_messages
from .schemas import ChatSessionResponseSchema

FORMATS = ("markdown", "json")


def sessions_of(user: User) -> list[dict]:
    """Every session of the user, oldest first, each with its messages."""
    sessions = db.session.scalars(
        select(ChatSession)
        .where(ChatSession.user_id == user.id)
        .order_by(ChatSession.created_at, ChatSession.id)
    ).all()
    return [session_with_messages(s) for s in sessions]


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
        if message.incomplete:
            flags.append("incomplete")
        if message.error and not message.is_bot:
            flags.append("no reply: " + message.error)
        note = f" ({'; '.join(flags)})" if flags else ""
        lines += [f"## {who} · {_when(message.created_at)}{note}", "", message.content, ""]
    return "\n".join(lines)


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
