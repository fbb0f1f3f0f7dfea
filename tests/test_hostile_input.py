"""Hostile input on every JSON route, form and path: a 400 or 422 envelope, never a 500, and
nothing stored or sent to a provider."""

import pytest
from sqlalchemy import func, select

from polygenix.extensions import db
from polygenix.models import ChatSession, Message, User
from tests.helpers import PASSWORD, ask, assert_envelope

DEEP = b"[" * 100_000 + b"]" * 100_000
HOSTILE_BODIES = {
    "deeply nested": DEEP,
    "nested objects": b'{"a":' * 50 + b"1" + b"}" * 50,
    "5,000-digit integer": b'{"session_id": ' + b"9" * 5000 + b"}",
    "huge float": b'{"session_id": 1e999999}',
    "NaN": b'{"session_id": NaN}',
    "lone surrogate": b'{"content": "\\ud800", "model": "echo", "name": "\\udfff"}',
    "lone surrogate in a key": b'{"\\ud800": 1}',
    "raw surrogate bytes": b'{"content": "\xed\xa0\x80"}',
    "not UTF-8": b'{"content": "\xff\xfe"}',
}


def json_routes(client, auth, headers):
    user_id = auth.user_id(headers)
    assert ask(client, headers, "hi").status_code == 200
    return [
        ("POST", "/api/auth/register", {}),
        ("POST", "/api/user/create", {}),
        ("POST", "/api/ai_chat/request", headers),
        ("PATCH", "/api/ai_chat/1", headers),
        ("PUT", f"/api/user/update/{user_id}", headers),
        ("POST", "/api/auth/logout", headers),
    ]


def counts(app):
    with app.app_context():
        return [
            db.session.scalar(select(func.count()).select_from(model))
            for model in (User, ChatSession, Message)
        ]


@pytest.mark.parametrize("name", HOSTILE_BODIES)
def test_bad_json_is_a_400_on_every_json_route(app, client, auth, ada, fake, name):
    routes = json_routes(client, auth, ada)
    before = counts(app)
    for method, path, headers in routes:
        response = client.open(
            path,
            method=method,
            headers=headers,
            data=HOSTILE_BODIES[name],
            content_type="application/json",
        )
        body = assert_envelope(response, 400)
        assert "Invalid JSON" in body["message"], (path, body)
    assert counts(app) == before
    # The login still works: nothing was logged out or changed.
    assert client.get("/api/auth/me", headers=ada).status_code == 200


def test_a_lone_surrogate_in_a_model_name_never_reaches_the_provider(client, ada, fake):
    fake.reset()
    response = client.post(
        "/api/ai_chat/request",
        headers=ada,
        data=b'{"content": "hi", "model": "openai/gpt\\ud800"}',
        content_type="application/json",
    )
    assert_envelope(response, 400, "unpaired surrogate")
    assert fake.requests == []


def test_paired_surrogates_are_ordinary_text(client, ada):
    response = client.post(
        "/api/ai_chat/request",
        headers=ada,
        data=b'{"content": "smile \\ud83d\\ude42", "model": "echo"}',
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response.json["content"] == "Echo: smile \U0001f642"


@pytest.mark.parametrize(
    "form",
    [
        {"username": "ada@example.com\x00", "password": PASSWORD},
        {"username": "ada@example.com", "password": PASSWORD + "\x00"},
    ],
)
def test_a_nul_in_the_login_form_is_a_422(client, ada, form):
    assert "json" not in assert_envelope(client.post("/api/auth/login", data=form), 422)


def test_a_nul_in_a_model_name_is_a_422_naming_the_field(client, ada, fake):
    fake.reset()
    response = client.post(
        "/api/ai_chat/request", headers=ada, json={"content": "hi", "model": "openai/x\x00y"}
    )
    assert "model" in assert_envelope(response, 422)["errors"]["json"]
    assert fake.requests == []


@pytest.mark.parametrize(
    "path", ["/api/user/email/ada%00@example.com", "/api/ai_chat/history?page=1%00"]
)
def test_a_nul_in_the_url_is_a_400(client, ada, path):
    assert_envelope(client.get(path, headers=ada), 400, "NUL")


def test_a_nul_in_a_registration_is_a_422(client):
    for field in ("name", "email", "password"):
        body = {"name": "Ada", "email": "ada@example.com", "password": PASSWORD}
        body[field] = body[field][:3] + "\x00" + body[field][3:]
        response = client.post("/api/auth/register", json=body)
        assert field in assert_envelope(response, 422)["errors"]["json"]
