"""Security hardening (OWASP ASVS 5.0, API Security Top 10), mapped in docs/security.md."""

import hashlib
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jwt as pyjwt
import pytest
import requests
from sqlalchemy import func, select

from polygenix.auth.tokens import issue_tokens
from polygenix.errors import Conflict
from polygenix.extensions import db
from polygenix.models import ChatSession, Message, User
from polygenix.user.service import create_user
from tests.gunicorn_server import gunicorn
from tests.helpers import PASSWORD, FakeClock, ask, assert_envelope, bearer

# --- V6 authentication: passwords ----------------------------------------------------------


@pytest.mark.parametrize(
    "password", ["password", "Password", "123456789", "qwertyuiop", "iloveyou"]
)
def test_password_policy_rejects_common_passwords(client, password):
    response = client.post(
        "/api/auth/register", json={"name": "A", "email": "a@b.co", "password": password}
    )
    body = assert_envelope(response, 422)
    assert "too common" in body["errors"]["json"]["password"][0]


def test_password_policy_has_no_composition_rules_and_allows_long_passphrases(client, auth):
    auth.tokens("a@example.com", password="all lower case words")
    auth.tokens("b@example.com", password="x" * 128)
    body = assert_envelope(
        client.post(
            "/api/auth/register", json={"name": "A", "email": "c@b.co", "password": "y" * 129}
        ),
        422,
    )
    assert "at most 128" in body["message"]


def test_password_hash_is_upgraded_at_login(app, client, auth):
    auth.tokens()
    with app.app_context():
        old = db.session.scalar(select(User.password_hash))
    assert old.startswith("pbkdf2:sha256:1000$")
    app.config["PASSWORD_HASH_METHOD"] = "scrypt:16384:8:1"
    login = {"username": "ada@example.com", "password": PASSWORD}
    assert app.test_client().post("/api/auth/login", data=login).status_code == 200
    with app.app_context():
        new = db.session.scalar(select(User.password_hash))
    assert new.startswith("scrypt:16384:8:1$")
    # Upgraded once: a second login keeps the same hash.
    assert client.post("/api/auth/login", data=login).status_code == 200
    with app.app_context():
        assert db.session.scalar(select(User.password_hash)) == new


def test_default_hash_is_owasp_strength_scrypt(config, monkeypatch):
    from polygenix import create_app

    del config["PASSWORD_HASH_METHOD"]
    assert create_app(config).config["PASSWORD_HASH_METHOD"] == "scrypt:131072:8:1"


# --- V9 tokens -------------------------------------------------------------------------------


def test_tokens_carry_jti_iat_type_and_only_the_configured_algorithm_is_accepted(app, auth):
    tokens = auth.tokens()
    for kind in ("access_token", "refresh_token"):
        header = pyjwt.get_unverified_header(tokens[kind])
        claims = pyjwt.decode(tokens[kind], app.config["JWT_SECRET_KEY"], algorithms=["HS256"])
        assert header["alg"] == "HS256"
        assert {"jti", "iat", "exp", "type", "sub"} <= set(claims)
    assert app.config["JWT_DECODE_ALGORITHMS"] == ["HS256"]


def test_refresh_tokens_rotate_and_reuse_revokes_the_family(make_app, auth):
    clock = FakeClock()
    client = make_app({"CLOCK": clock}).test_client()
    first = auth.tokens(client=client)
    rotated = client.post("/api/auth/refresh", headers=bearer(first["refresh_token"]))
    assert rotated.status_code == 200
    second = rotated.json
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get("/api/auth/me", headers=bearer(second["access_token"])).status_code == 200

    # The spent refresh token comes back (stolen?) after the grace window: refused, and its
    # whole family dies.
    clock.advance(60)
    reused = client.post("/api/auth/refresh", headers=bearer(first["refresh_token"]))
    assert_envelope(reused, 401, "revoked")
    for token in (second["access_token"], first["access_token"]):
        assert_envelope(client.get("/api/auth/me", headers=bearer(token)), 401)
    assert_envelope(client.post("/api/auth/refresh", headers=bearer(second["refresh_token"])), 401)
    # Another login (another family) is unaffected.
    other = auth.login_tokens(client=client)
    assert client.get("/api/auth/me", headers=bearer(other["access_token"])).status_code == 200


def test_password_change_revokes_every_earlier_token(client, auth):
    tokens = auth.tokens()
    other_device = auth.login_tokens()
    me = client.get("/api/auth/me", headers=bearer(tokens["access_token"])).json
    changed = client.put(
        f"/api/user/update/{me['id']}",
        headers=bearer(tokens["access_token"]),
        json={"password": "a whole new secret", "current_password": PASSWORD},
    )
    assert changed.status_code == 200
    for token in (tokens["access_token"], other_device["access_token"]):
        assert_envelope(client.get("/api/auth/me", headers=bearer(token)), 401, "revoked")
        assert_envelope(client.get(f"/api/auth/verify-token/{token}"), 401)
    for token in (tokens["refresh_token"], other_device["refresh_token"]):
        assert_envelope(client.post("/api/auth/refresh", headers=bearer(token)), 401)
    fresh = auth.login_tokens(password="a whole new secret")
    assert client.get("/api/auth/me", headers=bearer(fresh["access_token"])).status_code == 200


def test_name_change_keeps_tokens(client, auth):
    tokens = auth.tokens()
    me = client.get("/api/auth/me", headers=bearer(tokens["access_token"])).json
    client.put(
        f"/api/user/update/{me['id']}", headers=bearer(tokens["access_token"]), json={"name": "A"}
    )
    assert client.get("/api/auth/me", headers=bearer(tokens["access_token"])).status_code == 200


def test_verify_token_is_deprecated_and_never_logged(client, auth, caplog):
    caplog.set_level(logging.DEBUG)
    token = auth.tokens()["access_token"]
    assert client.get(f"/api/auth/verify-token/{token}").status_code == 200
    assert client.get(f"/api/auth/verify-token/{token}x").status_code == 401
    assert token not in caplog.text
    spec = client.get("/openapi.json").json
    assert spec["paths"]["/api/auth/verify-token/{token_id}"]["get"]["deprecated"] is True


# --- authorization: delete a user, admin only through the CLI ----------------------------------


def chat(client, headers, number):
    assert ask(client, headers, "hello", session_id=number).status_code == 200


def counts(app):
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(model))
            for model in (User, ChatSession, Message)
        )


def test_users_delete_themselves_with_their_data(app, client, auth):
    ada = auth.register("ada@example.com")
    bob = auth.register("bob@example.com")
    chat(client, ada, 1)
    chat(client, bob, 1)
    ada_id = auth.user_id(ada)
    assert_envelope(client.delete(f"/api/user/{ada_id}", headers=bob), 404)
    assert counts(app) == (2, 2, 4)
    response = client.delete(f"/api/user/{ada_id}", headers=ada)
    assert response.json == {"message": "User deleted successfully"}
    assert counts(app) == (1, 1, 2)
    assert_envelope(client.get("/api/auth/me", headers=ada), 401)


def test_admins_delete_anyone(app, client, auth):
    ada = auth.register("ada@example.com")
    chat(client, ada, 1)
    admin = auth.admin()
    assert client.delete(f"/api/user/{auth.user_id(ada)}", headers=admin).status_code == 200
    assert counts(app) == (1, 0, 0)
    assert_envelope(client.delete("/api/user/999", headers=admin), 404)


def test_admin_rights_come_only_from_the_cli(app, client, runner, auth):
    ada = auth.register("ada@example.com")
    for body in ({"is_admin": True}, {"name": "x", "is_admin": True}):
        assert (
            client.put(f"/api/user/update/{auth.user_id(ada)}", headers=ada, json=body).status_code
            == 422
        )
    assert_envelope(client.get("/api/user/all", headers=ada), 403)
    result = runner.invoke(args=["users", "set-admin", "ADA@example.com"])
    assert result.exit_code == 0 and "now an admin" in result.output
    assert client.get("/api/user/all", headers=ada).status_code == 200
    result = runner.invoke(args=["users", "set-admin", "ada@example.com", "--off"])
    assert result.exit_code == 0 and "no longer an admin" in result.output
    assert_envelope(client.get("/api/user/all", headers=ada), 403)
    result = runner.invoke(args=["users", "set-admin", "nobody@example.com"])
    assert result.exit_code != 0 and "No user" in result.output


# --- transport and browser-facing details ------------------------------------------------------


def test_security_headers_on_every_response(client):
    for path in ["/api/ai_chat/home", "/api/nothing", "/openapi.json", "/healthz"]:
        headers = client.get(path).headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_auth_responses_are_not_stored(client, auth):
    tokens = auth.tokens()
    for response in (
        client.post("/api/auth/login", data={"username": "ada@example.com", "password": PASSWORD}),
        client.post("/api/auth/refresh", headers=bearer(tokens["refresh_token"])),
        client.get("/api/auth/me", headers=bearer(tokens["access_token"])),
    ):
        assert response.headers["Cache-Control"] == "no-store"


def test_private_responses_are_never_cached(client, auth):
    ada = auth.register()
    chat(client, ada, 1)
    user_id = auth.user_id(ada)
    for path in (
        "/api/user/",
        f"/api/user/{user_id}",
        "/api/user/email/ada@example.com",
        "/api/ai_chat/home",
        "/api/ai_chat/models",
        "/api/ai_chat/1",
        "/api/ai_chat/1/export",
        "/api/ai_chat/999",  # an error about one's own data is private too
    ):
        response = client.get(path, headers=ada)
        assert response.headers["Cache-Control"] == "no-store", path
        assert "Authorization" in response.headers["Vary"], path
    # Listings offer conditional requests: a browser may keep its own copy, and must ask again.
    for path in ("/api/ai_chat/history", "/api/ai_chat/sessions"):
        response = client.get(path, headers=ada)
        assert response.headers["Cache-Control"] == "private, no-cache", path
        assert "Authorization" in response.headers["Vary"] and response.headers["ETag"], path
    reply = client.post(
        "/api/ai_chat/request", headers=ada, json={"content": "x", "model": "echo", "stream": True}
    )
    assert reply.headers["Cache-Control"] == "no-store"
    assert "Authorization" in reply.headers["Vary"]


@pytest.mark.slow
def test_a_body_over_the_limit_closes_its_connection(tmp_path):
    """413 says `Connection: close` (and closes it) rather than keep-alive that then breaks."""
    with gunicorn(tmp_path, {"MAX_CONTENT_LENGTH": "2048"}) as (base, _):
        host, port = base.removeprefix("http://").split(":")
        body = b'{"name": "A", "email": "a@b.co", "password": "' + b"p" * 4000 + b'"}'
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(
                b"POST /api/auth/register HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head = answer.split(b"\r\n\r\n", 1)[0].decode().lower()
        assert head.startswith("http/1.1 413")
        assert "connection: close" in head
        # A body within the limit keeps the connection for the next request.
        with requests.Session() as http:
            small = http.post(base + "/api/auth/login", data={"username": "a", "password": "b"})
            assert small.headers["Connection"] == "keep-alive"


def test_docs_page_has_a_csp_that_lets_it_run(client):
    csp = client.get("/docs").headers["Content-Security-Policy"]
    assert "script-src 'self' 'unsafe-inline'" in csp and "default-src 'self'" in csp
    assert "http" not in csp  # nothing from other hosts


def test_cors_is_off_by_default(client):
    response = client.options(
        "/api/ai_chat/home",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_allows_only_listed_origins(make_app):
    client = make_app({"CORS_ORIGINS": ["https://chat.example.com"]}).test_client()
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type",
    }
    allowed = client.options(
        "/api/ai_chat/request", headers={"Origin": "https://chat.example.com"} | preflight
    )
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://chat.example.com"
    assert "authorization" in allowed.headers["Access-Control-Allow-Headers"].lower()
    other = client.options(
        "/api/ai_chat/request", headers={"Origin": "https://evil.example"} | preflight
    )
    assert "Access-Control-Allow-Origin" not in other.headers


def login_from(client, ip, forwarded=None):
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return client.post(
        "/api/auth/login",
        data={"username": f"{ip}-{forwarded}@example.com", "password": "wrong password"},
        environ_base={"REMOTE_ADDR": ip},
        headers=headers,
    )


def test_forwarded_for_is_ignored_unless_a_proxy_is_trusted(make_app):
    client = make_app({"LOGIN_RATE_LIMIT": "2/minute"}).test_client()
    # Spoofed X-Forwarded-For values do not buy more attempts.
    assert login_from(client, "10.0.0.1", "1.1.1.1").status_code == 401
    assert login_from(client, "10.0.0.1", "2.2.2.2").status_code == 401
    assert login_from(client, "10.0.0.1", "3.3.3.3").status_code == 429


def test_proxy_fix_counts_the_real_client(make_app):
    client = make_app({"LOGIN_RATE_LIMIT": "2/minute", "PROXY_FIX_X_FOR": 1}).test_client()
    # Behind one trusted proxy, each real client has its own allowance.
    for real in ("1.1.1.1", "2.2.2.2"):
        assert login_from(client, "10.0.0.9", real).status_code == 401
        assert login_from(client, "10.0.0.9", real).status_code == 401
    assert login_from(client, "10.0.0.9", "1.1.1.1").status_code == 429


def test_provider_redirects_are_not_followed(provider_app, fake, auth):
    client = provider_app.test_client()
    ada = auth.register(client=client)
    fake.reply(307, b"", headers={"Location": "http://127.0.0.1:9/steal"})
    response = ask(client, ada, "hi", model="openai")
    assert_envelope(response, 502, "redirect")
    assert len(fake.requests) == 1


def test_output_tokens_are_capped(make_app, provider_config, fake, auth):
    caps = {"MAX_OUTPUT_TOKENS": 77, "REASONING_MAX_OUTPUT_TOKENS": 99}
    client = make_app(provider_config | caps).test_client()
    ada = auth.register(client=client)
    for model, field in [
        ("openai", "max_completion_tokens"),
        ("deepseek", "max_tokens"),
        ("anthropic", "max_tokens"),
    ]:
        ask(client, ada, "hi", model=model)
        assert fake.requests[-1].body[field] == 77
    ask(client, ada, "hi", model="gemini/gemini-2.0-flash")
    assert fake.requests[-1].body["generationConfig"] == {"maxOutputTokens": 77}
    ask(client, ada, "hi", model="gemini")  # gemini-2.5-flash reasons
    assert fake.requests[-1].body["generationConfig"]["maxOutputTokens"] == 99
    ask(client, ada, "hi", model="ollama")
    assert fake.requests[-1].body["options"] == {"num_predict": 77}


def test_create_user_helper_refuses_duplicates_case_insensitively(app):
    with app.app_context():
        create_user(name="A", email="Dup@Example.com", password=PASSWORD)
        with pytest.raises(Conflict, match="already registered"):
            create_user(name="B", email="dup@example.COM", password=PASSWORD)


# --- identifiers are never reused; a turn never outlives its session -------------------------


def test_a_deleted_accounts_tokens_never_open_the_next_account(app, client, auth):
    ada = auth.tokens()
    headers = bearer(ada["access_token"])
    chat(client, headers, 1)
    ada_id = auth.user_id(headers)
    assert client.delete(f"/api/user/{ada_id}", headers=headers).status_code == 200
    # The next account created does not get the freed id...
    eve = auth.register("eve@example.com")
    assert auth.user_id(eve) > ada_id
    # ...and even an account that held it would not accept Ada's tokens: they are bound to her
    # account's own key, not to an id.
    with app.app_context():
        db.session.execute(
            User.__table__.update().where(User.email == "eve@example.com").values(id=ada_id)
        )
        db.session.commit()
    for path in ("/api/auth/me", "/api/ai_chat/history", "/api/user/"):
        assert_envelope(client.get(path, headers=headers), 401)
    assert_envelope(client.post("/api/auth/refresh", headers=bearer(ada["refresh_token"])), 401)
    assert_envelope(client.get(f"/api/auth/verify-token/{ada['access_token']}"), 401)


def test_ids_of_users_sessions_and_messages_are_never_reused(app, client, auth):
    ada = auth.register("ada@example.com")
    chat(client, ada, 1)
    with app.app_context():
        before = [db.session.scalar(select(func.max(m.id))) for m in (User, ChatSession, Message)]
    assert client.delete(f"/api/user/{auth.user_id(ada)}", headers=ada).status_code == 200
    bob = auth.register("bob@example.com")
    chat(client, bob, 1)
    with app.app_context():
        after = [db.session.scalar(select(func.min(m.id))) for m in (User, ChatSession, Message)]
    assert all(new > old for new, old in zip(after, before, strict=True)), (before, after)


SLOW_HASH = "pbkdf2:sha256:3000000"  # about a second per hash on this kind of machine


@pytest.mark.slow
def test_password_hashes_run_a_bounded_number_at_a_time(make_app):
    app = make_app(
        {
            "PASSWORD_HASH_METHOD": SLOW_HASH,
            "PASSWORD_HASH_CONCURRENCY": 1,
            "PASSWORD_HASH_TIMEOUT": 0.1,
        }
    )
    with app.app_context():
        create_user(name="Ada", email="ada@example.com", password=PASSWORD)
    form = {"username": "ada@example.com", "password": PASSWORD}
    slow = ThreadPoolExecutor(1).submit(app.test_client().post, "/api/auth/login", data=form)
    time.sleep(0.2)  # the first login is hashing now
    busy = app.test_client().post("/api/auth/login", data=form)
    body = assert_envelope(busy, 503, "Too many password checks at once")
    assert busy.headers["Retry-After"] == "1" and "json" not in body
    assert slow.result().status_code == 200
    assert app.test_client().post("/api/auth/login", data=form).status_code == 200


class HashWatch:
    """Wraps hashlib.pbkdf2_hmac to see how many hashes run at once. Each call stays in flight
    until more than `bound` are (then all go on at once) or for at most a second, so hashes
    that may overlap do."""

    def __init__(self, real, bound: int):
        self.real, self.bound = real, bound
        self.in_flight = self.most = self.calls = 0
        self.changed = threading.Condition()

    def __call__(self, *args, **kwargs):
        with self.changed:
            self.in_flight += 1
            self.calls += 1
            self.most = max(self.most, self.in_flight)
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.in_flight > self.bound, timeout=1)
        try:
            return self.real(*args, **kwargs)
        finally:
            with self.changed:
                self.in_flight -= 1


def test_the_first_logins_of_a_fresh_app_hash_within_the_bound(make_app, monkeypatch):
    """Unknown emails are checked against a dummy hash: on an app that has served nothing yet,
    six logins at once still run at most PASSWORD_HASH_CONCURRENCY hashes at a time (the dummy
    is not made outside the bound on first use)."""
    # A method no other test uses: the dummy hash is made once per process and method.
    app = make_app({"PASSWORD_HASH_METHOD": "pbkdf2:sha256:1777", "PASSWORD_HASH_CONCURRENCY": 2})
    watch = HashWatch(hashlib.pbkdf2_hmac, bound=2)
    monkeypatch.setattr(hashlib, "pbkdf2_hmac", watch)
    start = threading.Barrier(6)

    def login(n):
        client = app.test_client()
        start.wait(timeout=10)
        form = {"username": f"nobody{n}@example.com", "password": PASSWORD}
        return client.post("/api/auth/login", data=form).status_code

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(login, range(6))) == [401] * 6
    assert watch.calls >= 6 and watch.most <= 2


@pytest.mark.slow
def test_login_holds_no_database_connection_while_hashing(make_app):
    """With a pool of one connection, a login that is hashing leaves it for other requests."""
    pool = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.5}
    app = make_app({"PASSWORD_HASH_METHOD": SLOW_HASH, "SQLALCHEMY_ENGINE_OPTIONS": pool})
    with app.app_context():
        user = create_user(name="Ada", email="ada@example.com", password=PASSWORD)
        access = issue_tokens(user)["access_token"]
    form = {"username": "ada@example.com", "password": PASSWORD}
    slow = ThreadPoolExecutor(1).submit(app.test_client().post, "/api/auth/login", data=form)
    time.sleep(0.2)  # the login has read its user and is hashing now (nothing to poll for)
    assert app.test_client().get("/api/auth/me", headers=bearer(access)).status_code == 200
    assert not slow.done()
    assert slow.result().status_code == 200
