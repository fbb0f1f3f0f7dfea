"""Logout, refresh rotation and the revocation list (in the database, whether or not Redis is set).

The suite runs on SQLite, PostgreSQL without Redis and PostgreSQL with Redis (see .ci/run); the
tests here also build apps without Redis explicitly, so every run covers the database path.
"""

from datetime import UTC, datetime, timedelta

import pytest
from flask_jwt_extended import decode_token
from sqlalchemy import select

from polygenix.auth.tokens import issue_tokens
from polygenix.extensions import db
from polygenix.models import RevokedToken
from polygenix.user.service import create_user
from tests.helpers import (
    PASSWORD,
    TEST_REDIS_URL,
    FakeClock,
    assert_envelope,
    bearer,
    closed_port,
)

REDIS_SETTINGS = [None, TEST_REDIS_URL] if TEST_REDIS_URL else [None]


@pytest.fixture(params=REDIS_SETTINGS, ids=lambda url: "redis" if url else "no-redis")
def clock(request, make_app):
    """A test clock, on an app with and (when the run has Redis) without Redis."""
    clock = FakeClock()
    clock.app = make_app({"REDIS_URL": request.param, "CLOCK": clock})
    return clock


@pytest.fixture
def app(clock):
    return clock.app


def refresh(client, token):
    return client.post("/api/auth/refresh", headers=bearer(token))


def test_logout_with_the_access_token_alone_ends_the_whole_login(client, auth):
    first = auth.tokens()
    second = refresh(client, first["refresh_token"]).json
    other_device = auth.login_tokens()
    response = client.post("/api/auth/logout", headers=bearer(second["access_token"]))
    assert response.status_code == 200 and response.json == {"message": "Logged out"}
    # Every token of that login: the one sent, the older access token, both refresh tokens.
    for token in (second["access_token"], first["access_token"]):
        assert_envelope(client.get("/api/auth/me", headers=bearer(token)), 401, "revoked")
        assert_envelope(client.get(f"/api/auth/verify-token/{token}"), 401)
    for token in (second["refresh_token"], first["refresh_token"]):
        assert_envelope(refresh(client, token), 401, "revoked")
    # Another login of the same account goes on.
    assert (
        client.get("/api/auth/me", headers=bearer(other_device["access_token"])).status_code == 200
    )
    assert refresh(client, other_device["refresh_token"]).status_code == 200


def test_logout_with_a_refresh_token_of_another_login_ends_both(client, auth):
    first, second = auth.tokens(), auth.login_tokens()
    response = client.post(
        "/api/auth/logout",
        headers=bearer(first["access_token"]),
        json={"refresh_token": second["refresh_token"]},
    )
    assert response.status_code == 200
    for tokens in (first, second):
        assert_envelope(refresh(client, tokens["refresh_token"]), 401, "revoked")
        assert_envelope(client.get("/api/auth/me", headers=bearer(tokens["access_token"])), 401)


def test_logout_refuses_a_refresh_token_that_is_not_yours(client, auth):
    tokens = auth.tokens()
    other = auth.tokens("bob@example.com")
    for bad in [other["refresh_token"], tokens["access_token"], "garbage"]:
        response = client.post(
            "/api/auth/logout",
            headers=bearer(tokens["access_token"]),
            json={"refresh_token": bad},
        )
        assert "refresh_token" in assert_envelope(response, 422)["errors"]["json"]
    # Nothing was revoked by the refused calls.
    assert client.get("/api/auth/me", headers=bearer(tokens["access_token"])).status_code == 200
    assert refresh(client, other["refresh_token"]).status_code == 200


def test_a_spent_refresh_token_within_the_grace_window_gets_a_pair_of_the_same_login(
    client, clock, auth
):
    first = auth.tokens()
    second = refresh(client, first["refresh_token"]).json
    clock.advance(9)  # REFRESH_REUSE_GRACE_SECONDS is 10: the other tab, a moment later
    again = refresh(client, first["refresh_token"])
    assert again.status_code == 200
    third = again.json
    assert third["refresh_token"] not in (first["refresh_token"], second["refresh_token"])
    with clock.app.app_context():
        families = {decode_token(t["refresh_token"])["fam"] for t in (first, second, third)}
    assert len(families) == 1
    # Both tabs stay logged in.
    for tokens in (second, third):
        assert client.get("/api/auth/me", headers=bearer(tokens["access_token"])).status_code == 200
    assert refresh(client, second["refresh_token"]).status_code == 200
    assert refresh(client, third["refresh_token"]).status_code == 200


def test_a_spent_refresh_token_after_the_grace_window_revokes_its_login(client, clock, auth):
    first = auth.tokens()
    second = refresh(client, first["refresh_token"]).json
    clock.advance(11)
    assert_envelope(refresh(client, first["refresh_token"]), 401, "revoked")
    assert_envelope(client.get("/api/auth/me", headers=bearer(second["access_token"])), 401)
    assert_envelope(refresh(client, second["refresh_token"]), 401)


def test_repeated_presentations_do_not_stretch_the_grace_window(client, clock, auth):
    first = auth.tokens()
    refresh(client, first["refresh_token"])
    clock.advance(6)
    assert refresh(client, first["refresh_token"]).status_code == 200
    clock.advance(6)  # 12 s after it was first spent
    assert_envelope(refresh(client, first["refresh_token"]), 401, "revoked")


def test_the_grace_window_can_be_switched_off(make_app, auth):
    client = make_app({"REFRESH_REUSE_GRACE_SECONDS": 0}).test_client()
    first = auth.tokens(client=client)
    assert refresh(client, first["refresh_token"]).status_code == 200
    assert_envelope(refresh(client, first["refresh_token"]), 401, "revoked")


def test_the_grace_window_does_not_revive_a_logged_out_login(client, auth):
    first = auth.tokens()
    refresh(client, first["refresh_token"])
    client.post("/api/auth/logout", headers=bearer(first["access_token"]))
    assert_envelope(refresh(client, first["refresh_token"]), 401, "revoked")


def test_first_refresh_works_and_revocations_live_in_the_database(client, clock, auth):
    """The first refresh of a login is a 200 on every database (it was a 401 on PostgreSQL
    without Redis), and what it spends is a row of revoked_tokens."""
    tokens = auth.tokens()
    assert refresh(client, tokens["refresh_token"]).status_code == 200
    with clock.app.app_context():
        claims = decode_token(tokens["refresh_token"])
        # An entry whose token has expired anyway is swept at the next revocation.
        db.session.add(RevokedToken(jti="old", expires_at=datetime.now(UTC) - timedelta(hours=1)))
        db.session.commit()
    client.post("/api/auth/logout", headers=bearer(tokens["access_token"]))
    with clock.app.app_context():
        rows = {r.jti: r for r in db.session.scalars(select(RevokedToken))}
    assert set(rows) == {claims["jti"], f"family:{claims['fam']}"}
    assert abs(rows[claims["jti"]].expires_at.timestamp() - claims["exp"]) < 1


def test_revocation_is_shared_between_workers(clock, make_app, client, auth):
    """Another app over the same database (another worker or host) sees the logout."""
    access = auth.tokens()["access_token"]
    other_worker = make_app({"REDIS_URL": clock.app.config["REDIS_URL"]}).test_client()
    assert other_worker.get("/api/auth/me", headers=bearer(access)).status_code == 200
    client.post("/api/auth/logout", headers=bearer(access))
    assert_envelope(other_worker.get("/api/auth/me", headers=bearer(access)), 401, "revoked")


def test_redis_down_does_not_stop_authentication(make_app):
    app = make_app({"REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"})
    client = app.test_client()
    with app.app_context():
        user = create_user(name="Ada", email="ada@example.com", password=PASSWORD)
        tokens = issue_tokens(user)
    assert client.get("/api/auth/me", headers=bearer(tokens["access_token"])).status_code == 200
    assert (
        client.post("/api/auth/logout", headers=bearer(tokens["access_token"])).status_code == 200
    )
    assert_envelope(client.get("/api/auth/me", headers=bearer(tokens["access_token"])), 401)
