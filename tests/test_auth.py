import time
from datetime import timedelta

import jwt as pyjwt
import pytest
from flask_jwt_extended import create_access_token, create_refresh_token

from polygenix.extensions import db
from polygenix.models import User
from tests.helpers import PASSWORD, assert_envelope, bearer

REGISTER = "/api/auth/register"
LOGIN = "/api/auth/login"


def register(client, **fields):
    body = {"name": "Tim joe", "email": "tim@joe.com", "password": "tims password"} | fields
    return client.post(REGISTER, json=body)


def test_register_returns_the_original_token_shape_plus_extras(client, app):
    response = register(client)
    assert response.status_code == 200
    body = response.json
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 30 * 60
    claims = pyjwt.decode(body["access_token"], app.config["JWT_SECRET_KEY"], algorithms=["HS256"])
    assert claims["sub"] == "1"
    assert claims["type"] == "access"
    assert claims["exp"] - claims["iat"] == 30 * 60
    # Nothing a bearer token does not need (no cookie-CSRF value).
    assert set(claims) == {"sub", "type", "iat", "nbf", "exp", "jti", "fresh", "acct", "fam"}
    refresh = pyjwt.decode(
        body["refresh_token"], app.config["JWT_SECRET_KEY"], algorithms=["HS256"]
    )
    assert refresh["type"] == "refresh" and refresh["sub"] == "1"


def test_register_stores_email_normalised_and_rejects_it_in_any_case(client, auth):
    assert register(client, email="  Tim@Joe.COM ").status_code == 200
    assert_envelope(register(client, email="TIM@joe.com"), 409, "already registered")
    me = client.get("/api/auth/me", headers=auth.login("tim@joe.com", "tims password"))
    assert me.json["email"] == "tim@joe.com"


@pytest.mark.parametrize(
    ("fields", "location"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "x" * 129}, "password"),
        ({"name": "   "}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"name": "nul\u0000"}, "name"),
        ({"email": "a\u0000@b.co"}, "email"),
        ({"is_admin": True}, "is_admin"),
        ({"id": 7}, "id"),
    ],
)
def test_register_rejects_bad_fields(client, fields, location):
    body = assert_envelope(register(client, **fields), 422)
    assert location in body["errors"]["json"]
    assert location in body["message"]


def test_register_requires_every_field(client):
    body = assert_envelope(client.post(REGISTER, json={}), 422)
    assert set(body["errors"]["json"]) == {"name", "email", "password"}


def test_password_minimum_is_configurable(client, app):
    app.config["PASSWORD_MIN_LENGTH"] = 12
    body = assert_envelope(register(client, password="elevenchars"), 422)
    assert "at least 12" in body["errors"]["json"]["password"][0]


def test_password_is_hashed_never_stored_or_returned(client, app):
    response = register(client, password="my secret words")
    assert "my secret words" not in response.get_data(as_text=True)
    from polygenix.extensions import db
    from polygenix.models import User

    with app.app_context():
        user = db.session.get(User, 1)
        assert "my secret words" not in user.password_hash
        assert user.password_hash.startswith("pbkdf2:sha256")
        assert user.verify_password("my secret words")


def test_login_with_the_original_clients_form(client):
    register(client, email="Jonh@doe.com")
    # Exactly what the original web client and Swagger UI send, `name` included.
    response = client.post(
        LOGIN,
        data={
            "name": "John",
            "grant_type": "password",
            "username": "Jonh@doe.com",
            "password": "tims password",
            "scope": "",
            "client_id": "string",
            "client_secret": "string",
        },
    )
    assert response.status_code == 200
    assert response.json["token_type"] == "bearer"
    assert {"access_token", "refresh_token", "expires_in"} <= set(response.json)


def test_login_minimal_form_and_email_case(client):
    register(client)
    response = client.post(LOGIN, data={"username": "TIM@JOE.COM", "password": "tims password"})
    assert response.status_code == 200


def test_login_rejects_other_grant_types(client):
    register(client)
    response = client.post(
        LOGIN, data={"grant_type": "client_credentials", "username": "tim@joe.com", "password": "x"}
    )
    body = assert_envelope(response, 422)
    assert "grant_type" in body["errors"]["form"]


def test_login_needs_the_form(client):
    register(client)
    response = client.post(LOGIN, json={"username": "tim@joe.com", "password": "tims password"})
    body = assert_envelope(response, 422)
    assert {"username", "password"} <= set(body["errors"]["form"])


def test_login_failures_are_indistinguishable(client):
    register(client)
    wrong_password = client.post(LOGIN, data={"username": "tim@joe.com", "password": "nope"})
    unknown_email = client.post(LOGIN, data={"username": "who@joe.com", "password": "nope"})
    assert_envelope(wrong_password, 401, "Incorrect email or password")
    assert wrong_password.json == unknown_email.json
    assert wrong_password.headers["WWW-Authenticate"] == "Bearer"
    strip = {"Date", "X-Request-ID"}  # per request by design
    assert [(k, v) for k, v in wrong_password.headers if k not in strip] == [
        (k, v) for k, v in unknown_email.headers if k not in strip
    ]


def test_unknown_email_still_costs_a_password_check(client, app):
    """An unknown email is verified against a dummy hash, so it costs what a wrong password does."""
    app.config["PASSWORD_HASH_METHOD"] = "pbkdf2:sha256:400000"
    register(client)

    def timed(username):
        start = time.perf_counter()
        client.post(LOGIN, data={"username": username, "password": "nope"})
        return time.perf_counter() - start

    timed("warm@joe.com")  # the dummy hash is made once, on first use
    wrong_password = min(timed("tim@joe.com") for _ in range(3))
    unknown_email = min(timed("who@joe.com") for _ in range(3))
    # Not a timing assertion on speed: a missing check would be ~100x cheaper, not 2x.
    assert unknown_email > wrong_password / 4


def test_verify_token(client):
    token = register(client).json["access_token"]
    response = client.get(f"/api/auth/verify-token/{token}")
    assert response.status_code == 200
    assert response.json == {"message": "Token is valid"}


def test_verify_token_rejects_bad_tokens(client, app):
    body = register(client).json
    token = body["access_token"]
    with app.test_request_context():
        expired = create_access_token("1", expires_delta=timedelta(seconds=-1))
        ghost = create_access_token("999", additional_claims={"ver": 0})
    for bad in [
        "garbage",
        token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
        expired,
        ghost,
        body["refresh_token"],
    ]:
        assert_envelope(client.get(f"/api/auth/verify-token/{bad}"), 401)


def test_refresh_issues_a_new_access_token(client):
    body = register(client).json
    response = client.post("/api/auth/refresh", headers=bearer(body["refresh_token"]))
    assert response.status_code == 200
    new = response.json["access_token"]
    assert response.json["token_type"] == "bearer"
    me = client.get("/api/auth/me", headers=bearer(new))
    assert me.status_code == 200 and me.json["email"] == "tim@joe.com"


def test_refresh_rejects_an_access_token(client):
    token = register(client).json["access_token"]
    response = client.post("/api/auth/refresh", headers=bearer(token))
    assert_envelope(response, 401)


def test_me_returns_the_caller_without_secrets(client, auth):
    headers = auth.register(email="ada@example.com", name="Ada")
    body = client.get("/api/auth/me", headers=headers).json
    assert body["email"] == "ada@example.com" and body["name"] == "Ada"
    assert body["is_admin"] is False
    assert not {"password", "password_hash"} & set(body)


@pytest.fixture
def tokens(app, client, auth):
    """One valid user and a zoo of tokens that must all be refused on an access route."""
    auth.register()
    key = app.config["JWT_SECRET_KEY"]
    now = int(time.time())
    claims = {"sub": "1", "type": "access", "iat": now, "nbf": now, "exp": now + 600, "jti": "x"}
    with app.test_request_context():
        account = db.session.get(User, 1).token_key
        ours = {"acct": account, "fam": "f"}  # the claims PolyGenix puts in its tokens
        good = create_access_token("1", additional_claims=ours)
        another_account = create_access_token("1", additional_claims=ours | {"acct": "0" * 32})
        no_account = create_access_token("1", additional_claims={"fam": "f"})
        refresh = create_refresh_token("1", additional_claims=ours)
        expired = create_access_token("1", expires_delta=timedelta(seconds=-5))
        deleted_user = create_access_token("42", additional_claims=ours)
        non_numeric = create_access_token("admin", additional_claims=ours)
    header, payload, _ = good.split(".")
    return {
        "good": good,
        "refresh": refresh,
        "expired": expired,
        "deleted_user": deleted_user,
        "another_account": another_account,
        "no_account": no_account,
        "non_numeric_sub": non_numeric,
        "bad_signature": pyjwt.encode(claims, "another-key-" + "k" * 60, algorithm="HS256"),
        "other_algorithm": pyjwt.encode(claims, key, algorithm="HS512"),
        "alg_none": pyjwt.encode(claims, None, algorithm="none"),
        "malformed": "not.a.jwt",
        "truncated": f"{header}.{payload}",
    }


@pytest.mark.parametrize(
    "name",
    [
        "refresh",
        "expired",
        "deleted_user",
        "another_account",
        "no_account",
        "non_numeric_sub",
        "bad_signature",
        "other_algorithm",
        "alg_none",
        "malformed",
        "truncated",
    ],
)
def test_every_bad_token_is_a_401_envelope(client, tokens, name):
    response = client.get("/api/ai_chat/home", headers=bearer(tokens[name]))
    assert_envelope(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert client.get(f"/api/auth/verify-token/{tokens[name]}").status_code == 401


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic dGltOmpvZQ==", "Token x"])
def test_missing_or_malformed_authorization_header_is_401(client, tokens, header):
    headers = {} if header is None else {"Authorization": header}
    assert_envelope(client.get("/api/ai_chat/home", headers=headers), 401)


def test_the_good_token_works(client, tokens):
    headers = bearer(tokens["good"])
    assert client.get("/api/ai_chat/home", headers=headers).status_code == 200


def test_login_after_password_change(client, auth):
    headers = auth.register(password=PASSWORD)
    user_id = auth.user_id(headers)
    response = client.put(
        f"/api/user/update/{user_id}",
        headers=headers,
        json={"password": "a brand new one", "current_password": PASSWORD},
    )
    assert response.status_code == 200
    assert (
        client.post(LOGIN, data={"username": "ada@example.com", "password": PASSWORD}).status_code
        == 401
    )
    assert auth.login("ada@example.com", "a brand new one")
