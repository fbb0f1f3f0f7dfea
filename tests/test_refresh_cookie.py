"""The web page's refresh token in an HttpOnly cookie, usable only from the page's own origin."""

import pytest

from tests.helpers import PASSWORD, assert_envelope, bearer

WEB = {"X-PolyGenix-Refresh-Cookie": "1", "Origin": "http://localhost"}
COOKIE = "polygenix_refresh"


def web_login(client, email="ada@example.com", headers=WEB):
    return client.post(
        "/api/auth/login", data={"username": email, "password": PASSWORD}, headers=headers
    )


def cookie_of(client):
    found = client.get_cookie(COOKIE, path="/api/auth/")
    return found.value if found is not None else None


@pytest.fixture
def ada_web(client, auth):
    auth.register()
    response = web_login(client)
    assert response.status_code == 200, response.json
    return response


def test_an_opted_in_login_keeps_the_refresh_token_out_of_the_body(ada_web, client):
    assert "refresh_token" not in ada_web.json
    assert ada_web.json["access_token"] and ada_web.json["token_type"] == "bearer"
    header = ada_web.headers["Set-Cookie"]
    assert header.startswith(f"{COOKIE}=")
    for part in ("HttpOnly", "SameSite=Strict", "Path=/api/auth/", "Max-Age=2592000"):
        assert part in header
    assert "Secure" not in header  # plain http: a Secure cookie would never come back
    assert (
        client.get("/api/auth/me", headers=bearer(ada_web.json["access_token"])).status_code == 200
    )


def test_the_cookie_is_secure_when_the_page_is_served_over_https(client, auth):
    auth.register()
    for base, origin in (("https://localhost", "https://localhost"), (None, "https://localhost")):
        # Served over https, or behind a proxy that ends TLS (the page's origin says https).
        extra = {"base_url": base} if base else {}
        response = client.post(
            "/api/auth/login",
            data={"username": "ada@example.com", "password": PASSWORD},
            headers=WEB | {"Origin": origin},
            **extra,
        )
        assert response.status_code == 200, response.json
        assert "; Secure" in response.headers["Set-Cookie"]


def test_refresh_reads_and_rotates_the_cookie(ada_web, client):
    first = cookie_of(client)
    response = client.post("/api/auth/refresh", headers=WEB)
    assert response.status_code == 200, response.json
    assert "refresh_token" not in response.json
    second = cookie_of(client)
    assert second and second != first
    assert (
        client.get("/api/auth/me", headers=bearer(response.json["access_token"])).status_code == 200
    )
    # The first token is spent: presented again after the grace window it revokes the login.
    client.application.config["REFRESH_REUSE_GRACE_SECONDS"] = 0
    client.set_cookie(COOKIE, first, domain="localhost", path="/api/auth/")
    assert_envelope(client.post("/api/auth/refresh", headers=WEB), 401)
    client.set_cookie(COOKIE, second, domain="localhost", path="/api/auth/")
    assert_envelope(client.post("/api/auth/refresh", headers=WEB), 401)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://localhost.evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost:8080"},
        {"Origin": "javascript://localhost"},
        {},  # no Origin at all
        {"Origin": "http://localhost", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://localhost", "Sec-Fetch-Site": "same-site"},
    ],
    ids=["other", "suffix", "null", "port", "scheme", "none", "fetch-cross", "fetch-same-site"],
)
def test_a_refresh_cookie_replayed_from_another_origin_is_refused(ada_web, client, headers):
    token = cookie_of(client)
    sent = {"X-PolyGenix-Refresh-Cookie": "1"} | headers
    body = assert_envelope(client.post("/api/auth/refresh", headers=sent), 403, "Cross-site")
    assert "access_token" not in body
    assert cookie_of(client) == token
    # Nothing was spent: the page itself still refreshes with it.
    assert client.post("/api/auth/refresh", headers=WEB).status_code == 200


def test_the_cookie_alone_is_ignored_as_for_any_other_client(ada_web, client):
    """Without the opt-in header a request is what it always was: a cookie is no credential."""
    body = assert_envelope(client.post("/api/auth/refresh"), 401)
    assert body["message"] == "Not authenticated: send 'Authorization: Bearer <token>'"
    body = assert_envelope(client.post("/api/auth/refresh", headers={"Origin": WEB["Origin"]}), 401)
    assert cookie_of(client) is not None
    # The cookie is sent only to /api/auth/, and never works as an access token there either.
    assert_envelope(client.get("/api/auth/me", headers=WEB), 401)


def test_cross_site_sign_up_and_login_are_refused_before_anything_happens(client, auth):
    evil = WEB | {"Origin": "http://evil.example"}
    new = {"name": "Eve", "email": "eve@example.com", "password": PASSWORD}
    assert_envelope(client.post("/api/auth/register", json=new, headers=evil), 403)
    assert (
        client.post(
            "/api/auth/login", data={"username": new["email"], "password": PASSWORD}
        ).status_code
        == 401
    )
    auth.register()
    assert_envelope(web_login(client, headers=evil), 403)
    assert cookie_of(client) is None


def test_clients_sending_refresh_tokens_work_exactly_as_before(client, auth, ada_web):
    tokens = auth.login_tokens()
    # Even with the page's cookie in the same jar, a bearer refresh token is what counts.
    response = client.post("/api/auth/refresh", headers=bearer(tokens["refresh_token"]))
    assert response.status_code == 200
    assert set(response.json) == {"access_token", "token_type", "refresh_token", "expires_in"}
    assert "Set-Cookie" not in response.headers
    # The opt-in header with a bearer token: the bearer is used, the answer goes to the cookie.
    response = client.post(
        "/api/auth/refresh", headers=WEB | bearer(response.json["refresh_token"])
    )
    assert response.status_code == 200 and "refresh_token" not in response.json
    assert "Set-Cookie" in response.headers


def test_logout_ends_the_cookies_login_and_clears_it(ada_web, client):
    access = ada_web.json["access_token"]
    # A refresh first: the cookie now holds a rotated token of the same login.
    access = client.post("/api/auth/refresh", headers=WEB).json["access_token"]
    token = cookie_of(client)
    response = client.post("/api/auth/logout", headers=WEB | bearer(access))
    assert response.status_code == 200
    assert f"{COOKIE}=;" in response.headers["Set-Cookie"]
    assert cookie_of(client) is None
    client.set_cookie(COOKIE, token, domain="localhost", path="/api/auth/")
    assert_envelope(client.post("/api/auth/refresh", headers=WEB), 401)


def test_logout_leaves_another_users_cookie_alone(ada_web, client, auth):
    bob = auth.register("bob@example.com", "Bob")
    token = cookie_of(client)
    assert client.post("/api/auth/logout", headers=WEB | bob).status_code == 200
    client.set_cookie(COOKIE, token, domain="localhost", path="/api/auth/")
    assert client.post("/api/auth/refresh", headers=WEB).status_code == 200


def test_no_cors_origin_may_send_the_opt_in_header(make_app):
    app = make_app({"CORS_ORIGINS": ["http://allowed.example"]})
    response = app.test_client().options(
        "/api/auth/refresh",
        headers={
            "Origin": "http://allowed.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-polygenix-refresh-cookie",
        },
    )
    allowed = response.headers.get("Access-Control-Allow-Headers", "").lower()
    assert "x-polygenix-refresh-cookie" not in allowed
    # And had a browser sent it anyway, the Origin check refuses it.
    client = app.test_client()
    sent = {"X-PolyGenix-Refresh-Cookie": "1", "Origin": "http://allowed.example"}
    assert_envelope(client.post("/api/auth/refresh", headers=sent), 403)
