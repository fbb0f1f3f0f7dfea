"""GET /api/ai_chat/export: all the caller's sessions, streamed as JSON or a zip of Markdown."""

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from polygenix.chat import export
from polygenix.extensions import db
from polygenix.models import ChatSession, Message
from tests.helpers import ask, assert_envelope, counted_statements, warm_up

EXPORT = "/api/ai_chat/export"


def exported(client, headers, query=""):
    response = client.get(EXPORT + query, headers=headers)
    assert response.status_code == 200, response.data[:200]
    assert response.is_streamed
    return response


def as_zip(response) -> zipfile.ZipFile:
    assert response.mimetype == "application/zip"
    return zipfile.ZipFile(io.BytesIO(response.get_data()))


def make_sessions(app, user_id, numbers):
    """Sessions with one question and its reply each, made in the order of `numbers` (straight
    in the database: more chat requests than the rate limit allows)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with app.app_context():
        for n, number in enumerate(numbers):
            at = start + timedelta(minutes=n)
            session = ChatSession(user_id=user_id, number=number, title=f"chat {number}")
            session.created_at = at
            question = Message(session=session, is_bot=False, content=f"q{number}", created_at=at)
            reply = Message(
                session=session, is_bot=True, content=f"a{number}", reply_to=question, created_at=at
            )
            db.session.add_all([session, question, reply])
        db.session.commit()


def test_json_holds_each_session_as_its_own_get_shows_it(client, ada):
    ask(client, ada, "first question", session_id=7)
    ask(client, ada, "second question", session_id=7)
    ask(client, ada, "another session", session_id=3)
    response = exported(client, ada)
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="polygenix-chats.json"'
    )
    body = json.loads(response.get_data(as_text=True))
    assert body == {"sessions": [client.get(f"/api/ai_chat/{n}", headers=ada).json for n in (7, 3)]}
    assert exported(client, ada, "?format=json").get_data() == response.get_data()


def test_markdown_is_a_zip_of_one_transcript_per_session(client, ada):
    ask(client, ada, "How do I export?", session_id=12)
    ask(client, ada, "Und auf Deutsch? Ä", session_id=5)
    response = exported(client, ada, "?format=markdown")
    assert response.headers["Content-Disposition"] == 'attachment; filename="polygenix-chats.zip"'
    archive = as_zip(response)
    assert archive.testzip() is None
    assert archive.namelist() == ["polygenix-chat-12.md", "polygenix-chat-5.md"]
    for number in (12, 5):
        text = archive.read(f"polygenix-chat-{number}.md").decode()
        single = client.get(f"/api/ai_chat/{number}/export", headers=ada).get_data(as_text=True)
        assert text == single


def test_an_account_with_no_sessions_exports_an_empty_document_and_zip(client, ada):
    assert json.loads(exported(client, ada).get_data()) == {"sessions": []}
    archive = as_zip(exported(client, ada, "?format=markdown"))
    assert archive.testzip() is None and archive.namelist() == []


def test_only_the_callers_sessions_are_exported(client, ada, bob):
    ask(client, ada, "ada's secret", session_id=1)
    ask(client, bob, "bob's own", session_id=1)
    text = exported(client, bob).get_data(as_text=True)
    assert "bob's own" in text and "ada's secret" not in text
    archive = as_zip(exported(client, bob, "?format=markdown"))
    assert "ada's secret" not in archive.read("polygenix-chat-1.md").decode()


def test_superseded_messages_only_when_asked_and_live_streams_never(app, client, ada):
    ask(client, ada, "kept question", session_id=1)
    ask(client, ada, "replaced question", session_id=1)
    ask(client, ada, "being streamed", session_id=1)
    with app.app_context():
        db.session.execute(
            update(Message)
            .where(Message.content == "Echo: replaced question")
            .values(superseded=True)
        )
        db.session.execute(
            update(Message)
            .where(Message.content == "Echo: being streamed")
            .values(lease_until=datetime.now(UTC) + timedelta(minutes=5))
        )
        db.session.commit()

    def contents(query):
        body = json.loads(exported(client, ada, query).get_data())
        return [m["content"] for m in body["sessions"][0]["messages"]]

    shown = ["kept question", "Echo: kept question", "replaced question", "being streamed"]
    assert contents("") == shown
    assert contents("?include_superseded=true") == shown[:3] + [
        "Echo: replaced question",
        "being streamed",
    ]
    zipped = as_zip(exported(client, ada, "?format=markdown")).read("polygenix-chat-1.md")
    assert b"Echo: replaced question" not in zipped and b"Echo: being streamed" not in zipped


def test_many_sessions_come_in_order_in_batches(app, client, auth, ada):
    numbers = list(range(120, 0, -1))  # made highest number first: the order is by creation
    make_sessions(app, auth.user_id(ada), numbers)
    warm_up(client, ada)
    with counted_statements(app) as statements:
        body = json.loads(exported(client, ada).get_data())
    assert [s["chat_id"] for s in body["sessions"]] == numbers
    assert [m["content"] for m in body["sessions"][7]["messages"]] == ["q113", "a113"]
    reads = [s for s in statements if "FROM chat_sessions" in s or "FROM messages" in s]
    batches = -(-len(numbers) // export.BATCH)
    assert len(reads) == 2 * batches  # sessions, then their messages, per batch; nothing more
    archive = as_zip(exported(client, ada, "?format=markdown"))
    assert archive.namelist() == [f"polygenix-chat-{n}.md" for n in numbers]


def test_a_session_deleted_while_exporting_is_simply_left_out(app, client, auth, ada):
    make_sessions(app, auth.user_id(ada), range(1, export.BATCH + 3))
    response = client.get(EXPORT, headers=ada)
    chunks = iter(response.response)
    first = next(chunks)  # the document's start: the first batch is read on the next chunk
    head = next(chunks)
    assert client.delete(f"/api/ai_chat/{export.BATCH + 2}", headers=ada).status_code == 200
    body = json.loads((first + head + b"".join(chunks)).decode())
    assert [s["chat_id"] for s in body["sessions"]] == list(range(1, export.BATCH + 2))


def test_export_is_authenticated_and_validated(client, ada):
    assert_envelope(client.get(EXPORT), 401)
    assert_envelope(client.get(EXPORT + "?format=pdf", headers=ada), 422)
    assert_envelope(client.get(EXPORT + "?include_superseded=perhaps", headers=ada), 422)
