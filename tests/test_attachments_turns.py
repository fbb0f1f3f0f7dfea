"""An upload received whole in memory or spooled (a body of unknown length), a message's
attachments given, ordered and let go in one UPDATE, read with their bytes in one query, and
their base64 kept as bytes, which a provider's body takes as they are."""

import base64
import contextlib
import hashlib
import io
import json

import pytest
from sqlalchemy import event, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from polygenix.attachments.models import Attachment
from polygenix.attachments.routes import UploadRequest
from polygenix.extensions import db
from polygenix.providers.jsonbody import encode, inline
from polygenix.providers.messages import base64_source
from tests import images
from tests.helpers import ask, assert_envelope

UPLOAD = "/api/ai_chat/attachments"


def form(data: bytes) -> tuple[bytes, str]:
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(data), "x.png")})
    return body, f"multipart/form-data; boundary={boundary}"


def upload(client, headers, data: bytes) -> int:
    body, content_type = form(data)
    response = client.post(UPLOAD, headers=headers, data=body, content_type=content_type)
    assert response.status_code == 201, response.json
    return response.json["id"]


def stored(client, headers, attachment_id: int) -> bytes:
    response = client.get(f"{UPLOAD}/{attachment_id}", headers=headers)
    assert response.status_code == 200
    return response.data


def test_a_large_upload_is_stored_byte_for_byte(client, ada):
    data = images.noisy_png(1024 * 1024)
    body, content_type = form(data)
    response = client.post(UPLOAD, headers=ada, data=body, content_type=content_type)
    assert response.status_code == 201, response.json
    assert response.json["sha256"] == hashlib.sha256(data).hexdigest()
    assert response.json["bytes"] == len(data)
    assert stored(client, ada, response.json["id"]) == data


def test_an_upload_of_unknown_length_is_spooled_and_stored_whole(client, ada):
    data = images.noisy_png(700 * 1024)  # over the 500 KB werkzeug keeps in memory
    body, content_type = form(data)
    response = client.post(
        UPLOAD,
        headers=ada,
        input_stream=io.BytesIO(body),
        content_type=content_type,
        environ_overrides={"wsgi.input_terminated": True},  # no Content-Length: chunked
    )
    assert response.status_code == 201, response.json
    assert stored(client, ada, response.json["id"]) == data


@pytest.mark.parametrize("size", [120_000, 300_000])  # within the form's overhead, past it
def test_an_upload_of_unknown_length_over_the_limit_is_a_413(make_app, auth, size):
    app = make_app({"ATTACHMENT_MAX_BYTES": 100_000})
    client = app.test_client()
    headers = auth.register(client=client)
    body, content_type = form(images.noisy_png(size))
    response = client.post(
        UPLOAD,
        headers=headers,
        input_stream=io.BytesIO(body),
        content_type=content_type,
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_envelope(response, 413)


@pytest.mark.parametrize(
    ("length", "bound", "in_memory"),
    [(2_000_000, 3_000_000, True), (3_000_000, 3_000_000, True), (3_000_001, 3_000_000, False)]
    + [(None, 3_000_000, False)]
    # No bound of the request's own: the app's MAX_CONTENT_LENGTH (1 MiB).
    + [(1_048_576, None, True), (1_048_577, None, False)],
)
def test_a_file_part_is_kept_in_memory_only_within_a_known_bound(app, length, bound, in_memory):
    with app.test_request_context(method="POST"):
        request = UploadRequest({"REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO()})
        request.max_content_length = bound
        stream = request._get_file_stream(length, "image/png", "x.png")
        try:
            assert isinstance(stream, io.BytesIO) is in_memory
        finally:
            stream.close()


@contextlib.contextmanager
def statements(app):
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def owners(app, *ids: int) -> list[tuple[int | None, int]]:
    with app.app_context():
        rows = {
            a.id: (a.message_id, a.position)
            for a in db.session.scalars(select(Attachment).where(Attachment.id.in_(ids)))
        }
        db.session.remove()
    return [rows[i] for i in ids]


def test_an_edit_orders_keeps_adds_and_lets_go_in_one_update(app, client, ada):
    a = upload(client, ada, images.png((3, 2)))
    b = upload(client, ada, images.gif((5, 4)))
    c = upload(client, ada, images.webp((6, 6)))
    with statements(app) as seen:
        reply = ask(client, ada, "two", attachment_ids=[b, a])
    assert reply.status_code == 200, reply.json
    assert reply.json["content"].index("image/gif") < reply.json["content"].index("image/png")
    updates = [s for s in seen if s.startswith("UPDATE attachments")]
    assert len(updates) == 1, updates
    reads = [s for s in seen if "attachment" in s and s.startswith("SELECT")]
    assert len(reads) == 1, reads  # the attachments and their bytes together, nothing else
    chat_id = reply.json["session_id"]
    question = client.get(f"/api/ai_chat/{chat_id}", headers=ada).json["messages"][0]["id"]
    assert owners(app, b, a, c) == [(question, 0), (question, 1), (None, 0)]

    url = f"/api/ai_chat/{chat_id}/messages/{question}"
    with statements(app) as seen:
        edited = client.put(url, headers=ada, json={"content": "x", "attachment_ids": [c, b]})
    assert edited.status_code == 200, edited.json
    assert len([s for s in seen if s.startswith("UPDATE attachments")]) == 1
    shown = client.get(f"/api/ai_chat/{chat_id}", headers=ada).json["messages"][0]
    assert [x["id"] for x in shown["attachments"]] == [c, b]
    assert owners(app, c, b) == [(question, 0), (question, 1)]
    assert owners(app, a)[0][0] is None  # let go: the orphan sweep takes it

    cleared = client.put(url, headers=ada, json={"content": "y", "attachment_ids": []})
    assert cleared.status_code == 200, cleared.json
    assert [m[0] for m in owners(app, a, b, c)] == [None, None, None]
    shown = client.get(f"/api/ai_chat/{chat_id}", headers=ada).json["messages"][0]
    assert shown["attachments"] == []


def test_another_users_attachment_is_neither_read_nor_taken(app, client, ada, bob):
    mine = upload(client, ada, images.png())
    theirs = upload(client, bob, images.png())
    assert_envelope(ask(client, ada, "x", attachment_ids=[mine, theirs]), 404)
    assert [m[0] for m in owners(app, mine, theirs)] == [None, None]
    used = ask(client, bob, "x", attachment_ids=[theirs])
    assert used.status_code == 200
    assert_envelope(ask(client, ada, "y", attachment_ids=[theirs]), 404)
    again = ask(client, bob, "z", attachment_ids=[theirs])
    assert_envelope(again, 409)


RAW = bytes(range(256)) * 3
TEXT = base64.b64encode(RAW).decode()


def test_an_images_base64_is_bytes_that_a_providers_body_takes_as_they_are():
    source = base64_source("image/png", RAW)
    assert source == {"type": "base64", "media_type": "image/png", "data": TEXT.encode()}
    body = encode({"url": inline(source, "data:image/png;base64,"), "data": inline(source)})
    assert json.loads(bytes(body)) == {"url": "data:image/png;base64," + TEXT, "data": TEXT}
    # The very bytes the source holds, twice: neither copied nor made text.
    assert [piece is source["data"] for piece in body.pieces].count(True) == 2
