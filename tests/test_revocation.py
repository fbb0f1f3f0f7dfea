"""Logout and the revocation list: Redis when REDIS_URL is set (TEST_REDIS_URL in CI), else SQL."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from flask_jwt_extended import decode_token
from sqlalchemy import select

from polygenix.auth.tokens import issue_tokens
from polygenix.extensions import db, redis_client
from polygenix.models import RevokedToken
from polygenix.user.service import create_user
from tests.helpers import TEST_REDIS_URL, assert_envelope, closed_port


@pytest.fixture
def tokens(client):
    body = client.post(
        "/api/auth/register",
        json={"name": "Ada", "email": "ada@example.com", "password": "long enough"},
    ).json
    return body["access_token"], body["refresh_token"]


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_logout_revokes_the_access_token(client, tokens):
    access, refresh = tokens
    response = client.post("/api/auth/logout", headers=bearer(access))
    assert response.status_code == 200 and response.json == {"message": "Logged out"}
    assert_envelope(client.get("/api/auth/me", headers=bearer(access)), 401, "revoked")
    assert_envelope(client.get(f"/api/auth/verify-token/{access}"), 401)
    # The refresh token was not named, so it still works.
    assert client.post("/api/auth/refresh", headers=bearer(refresh)).status_code == 200


def test_logout_with_refresh_token_revokes_both(client, tokens):
    access, refresh = tokens
    response = client.post(
        "/api/auth/logout", headers=bearer(access), json={"refresh_token": refresh}
    )
    assert response.status_code == 200
    assert_envelope(client.post("/api/auth/refresh", headers=bearer(refresh)), 401, "revoked")


def test_logout_refuses_a_refresh_token_that_is_not_yours(client, tokens, auth):
    access, _ = tokens
    other = client.post(
        "/api/auth/register",
        json={"name": "Bob", "email": "bob@example.com", "password": "long enough"},
    ).json
    for bad in [other["refresh_token"], access, "garbage"]:
        response = client.post(
            "/api/auth/logout", headers=bearer(access), json={"refresh_token": bad}
        )
        assert "refresh_token" in assert_envelope(response, 422)["errors"]["json"]
    # Nothing was revoked by the refused calls.
    assert client.get("/api/auth/me", headers=bearer(access)).status_code == 200
    assert (
        client.post("/api/auth/refresh", headers=bearer(other["refresh_token"])).status_code == 200
    )


def test_revocation_is_shared_between_workers(make_app, tokens, client):
    """Another app over the same database and Redis (another worker or host) sees the logout."""
    access, _ = tokens
    other_worker = make_app().test_client()
    assert other_worker.get("/api/auth/me", headers=bearer(access)).status_code == 200
    client.post("/api/auth/logout", headers=bearer(access))
    assert_envelope(other_worker.get("/api/auth/me", headers=bearer(access)), 401, "revoked")


def register(client):
    body = client.post(
        "/api/auth/register",
        json={"name": "Ada", "email": "ada@example.com", "password": "long enough"},
    ).json
    return body["access_token"]


def test_without_redis_revocations_live_in_the_database(make_app):
    app = make_app({"REDIS_URL": None})
    client = app.test_client()
    access = register(client)
    with app.app_context():
        # An entry whose token has expired anyway is swept at the next revocation.
        db.session.add(RevokedToken(jti="old", expires_at=datetime.now(UTC) - timedelta(hours=1)))
        db.session.commit()
    client.post("/api/auth/logout", headers=bearer(access))
    assert_envelope(client.get("/api/auth/me", headers=bearer(access)), 401, "revoked")
    with app.app_context():
        claims = decode_token(access)
        [row] = db.session.scalars(select(RevokedToken)).all()
    assert row.jti == claims["jti"]
    assert abs(row.expires_at.timestamp() - claims["exp"]) < 1


@pytest.mark.skipif(not TEST_REDIS_URL, reason="needs TEST_REDIS_URL")
def test_with_redis_revocations_expire_with_the_token(make_app):
    app = make_app({"REDIS_URL": TEST_REDIS_URL})
    client = app.test_client()
    access = register(client)
    client.post("/api/auth/logout", headers=bearer(access))
    assert_envelope(client.get("/api/auth/me", headers=bearer(access)), 401, "revoked")
    with app.app_context():
        claims = decode_token(access)
        ttl = redis_client().ttl(f"{app.config['REDIS_KEY_PREFIX']}revoked:{claims['jti']}")
        assert db.session.scalar(select(RevokedToken.jti)) is None
    remaining = claims["exp"] - time.time()
    assert remaining - 5 <= ttl <= remaining + 5


def test_redis_down_is_503_not_500(make_app):
    app = make_app({"REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"})
    client = app.test_client()
    with app.app_context():
        user = create_user(name="Ada", email="ada@example.com", password="long enough")
        token = issue_tokens(user)["access_token"]
    # The revocation check needs Redis on every authenticated request...
    response = client.get("/api/auth/me", headers=bearer(token))
    body = assert_envelope(response, 503, "Shared state store unavailable")
    assert response.headers["Retry-After"] == "1"
    assert "Connection" not in body["message"]
    # ...and the rate limiter on every login.
    assert_envelope(
        client.post("/api/auth/login", data={"username": "ada@example.com", "password": "x"}),
        503,
    )
