"""Personal API keys: their life cycle, where they work and where not, how they are kept."""

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from polygenix.extensions import db
from polygenix.models import ApiKey
from tests.gunicorn_server import gunicorn, register_over_http
from tests.helpers import PASSWORD, FakeClock, ask, assert_envelope, bearer


@pytest.fixture
def new_key(client, ada):
    def make(name="laptop", headers=None, **fields):
        return client.post("/api/keys", headers=headers or ada, json={"name": name} | fields)

    return make


def test_a_key_is_made_once_listed_without_its_secret_and_revoked(client, ada, new_key, app):
    made = new_key(expires_in_days=30)
    assert made.status_code == 201
    body = made.json
    assert set(body) == {"id", "name", "key", "prefix", "created_at", "expires_at"}
    assert body["key"].startswith("pgx_") and len(body["key"]) >= 36
    assert body["prefix"] == body["key"][:12] and body["expires_at"] is not None
    listed = client.get("/api/keys", headers=ada).json
    assert [k["id"] for k in listed] == [body["id"]]
    assert set(listed[0]) == {"id", "name", "prefix", "created_at", "last_used_at", "expires_at"}
    assert body["key"] not in client.get("/api/keys", headers=ada).get_data(as_text=True)
    # The database keeps only its SHA-256.
    with app.app_context():
        [stored] = db.session.scalars(select(ApiKey)).all()
        columns = json.dumps({c.name: str(getattr(stored, c.name)) for c in ApiKey.__table__.c})
    assert body["key"] not in columns
    assert stored.digest == hashlib.sha256(body["key"].encode()).hexdigest()
    key = bearer(body["key"])
    assert ask(client, key, "with a key").status_code == 200
    revoked = client.delete(f"/api/keys/{body['id']}", headers=ada)
    assert revoked.json == {"message": "API key revoked"}
    assert_envelope(ask(client, key, "after"), 401, "Invalid API key")
    assert client.get("/api/keys", headers=ada).json == []


def test_a_key_works_on_chat_and_is_refused_on_account_management(client, ada, new_key, auth):
    key = bearer(new_key().json["key"])
    user_id = auth.user_id(ada)
    assert ask(client, key, "hi").status_code == 200
    for path in ("/api/ai_chat/history", "/api/ai_chat/sessions", "/api/ai_chat/home"):
        assert client.get(path, headers=key).status_code == 200, path
    for method, path, body in (
        ("POST", "/api/keys", {"name": "k"}),
        ("GET", "/api/keys", None),
        ("DELETE", "/api/keys/1", None),
        ("PUT", f"/api/user/update/{user_id}", {"name": "x"}),
        ("DELETE", f"/api/user/{user_id}", None),
        ("POST", "/api/auth/logout", None),
        ("POST", "/api/auth/refresh", None),
        ("GET", "/api/user/", None),
    ):
        response = client.open(path, method=method, headers=key, json=body)
        assert_envelope(response, 403, "this needs a login")
    assert client.get("/api/user/", headers=ada).status_code == 200  # the account stands


def test_another_users_key_is_a_404_and_keys_die_with_their_user(client, ada, bob, new_key, auth):
    mine = new_key().json
    assert_envelope(client.delete(f"/api/keys/{mine['id']}", headers=bob), 404)
    assert client.get("/api/keys", headers=bob).json == []
    assert client.delete(f"/api/user/{auth.user_id(ada)}", headers=ada).status_code == 200
    assert_envelope(ask(client, bearer(mine["key"]), "ghost"), 401, "Invalid API key")


def test_an_expired_key_is_a_401_and_not_listed(make_app, auth):
    clock = FakeClock()
    client = make_app({"CLOCK": clock}).test_client()
    ada = auth.register(client=client)
    made = client.post("/api/keys", headers=ada, json={"name": "short", "expires_in_days": 1}).json
    assert ask(client, bearer(made["key"]), "today").status_code == 200
    clock.advance(86_401)
    assert_envelope(ask(client, bearer(made["key"]), "tomorrow"), 401, "expired")
    assert client.get("/api/keys", headers=ada).json == []


def test_last_use_is_written_at_most_once_a_minute(make_app, auth, app):
    clock = FakeClock()
    client = make_app({"CLOCK": clock}).test_client()
    ada = auth.register(client=client)
    made = client.post("/api/keys", headers=ada, json={"name": "k"}).json
    key = bearer(made["key"])

    def last_used():
        return client.get("/api/keys", headers=ada).json[0]["last_used_at"]

    assert last_used() is None
    client.get("/api/ai_chat/home", headers=key)
    first = last_used()
    clock.advance(30)
    client.get("/api/ai_chat/home", headers=key)
    assert last_used() == first  # not written again within the minute
    clock.advance(31)
    client.get("/api/ai_chat/home", headers=key)
    assert last_used() > first


def test_at_most_api_keys_per_user_live_keys(make_app, auth):
    client = make_app({"API_KEYS_PER_USER": 2}).test_client()
    ada = auth.register(client=client)
    for n in range(2):
        assert client.post("/api/keys", headers=ada, json={"name": f"k{n}"}).status_code == 201
    assert_envelope(client.post("/api/keys", headers=ada, json={"name": "k2"}), 409, "most allowed")


def test_the_key_limit_holds_for_creations_at_once(make_app, auth):
    """Forty creations at once on one app (threads): exactly the limit's worth are made."""
    app = make_app({"API_KEYS_PER_USER": 20})
    ada = auth.register(client=app.test_client())
    start = threading.Barrier(40)

    def create(n):
        client = app.test_client()
        start.wait(timeout=10)
        return client.post("/api/keys", headers=ada, json={"name": f"k{n}"}).status_code

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(create, range(40)))
    assert sorted(statuses) == [201] * 20 + [409] * 20
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ApiKey)) == 20


@pytest.mark.slow
def test_the_key_limit_holds_across_gunicorn_workers(tmp_path):
    with gunicorn(tmp_path, {"API_KEYS_PER_USER": "5"}) as (base, _):
        headers = register_over_http(base)

        def create(n):
            url = base + "/api/keys"
            return requests.post(url, headers=headers, json={"name": f"k{n}"}, timeout=20)

        with ThreadPoolExecutor(24) as pool:
            statuses = [r.status_code for r in pool.map(create, range(24))]
        live = requests.get(base + "/api/keys", headers=headers, timeout=10).json()
    assert sorted(statuses) == [201] * 5 + [409] * 19
    assert len(live) == 5


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x" * 101},
        {"name": "k", "expires_in_days": 0},
        {"name": "k", "expires_in_days": 3651},
        {"name": "k", "expires_in_days": "7"},
        {"name": "k", "owner": 1},
    ],
)
def test_bad_key_requests_are_a_422(client, ada, body):
    assert_envelope(client.post("/api/keys", headers=ada, json=body), 422)


def test_cli_creates_lists_and_revokes_keys(runner, client, ada, bob):
    made = runner.invoke(
        args=["keys", "create", "ada@example.com", "--name", "ci", "--expires-days", "7"]
    )
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("pgx_")
    assert ask(client, bearer(secret), "from the CLI's key").status_code == 200
    runner.invoke(args=["keys", "create", "bob@example.com", "--name", "bob's"])
    listing = json.loads(runner.invoke(args=["keys", "list", "--json"]).output)
    assert {(k["email"], k["name"]) for k in listing} == {
        ("ada@example.com", "ci"),
        ("bob@example.com", "bob's"),
    }
    assert secret not in runner.invoke(args=["keys", "list"]).output
    ada_only = json.loads(runner.invoke(args=["keys", "list", "ada@example.com", "--json"]).output)
    assert [k["name"] for k in ada_only] == ["ci"]
    revoked = runner.invoke(args=["keys", "revoke", str(ada_only[0]["id"])])
    assert revoked.exit_code == 0 and "Revoked" in revoked.output
    assert_envelope(ask(client, bearer(secret), "gone"), 401)
    assert runner.invoke(args=["keys", "revoke", "999"]).exit_code != 0


def test_all_of_ones_keys_are_revoked_at_once(client, ada, bob, new_key, auth):
    keys = [new_key(f"k{n}").json["key"] for n in range(3)]
    bobs = new_key("bob's", headers=bob).json["key"]
    assert ask(client, bearer(keys[0]), "still mine").status_code == 200
    # A key cannot do it: managing keys needs a login.
    assert_envelope(client.delete("/api/keys", headers=bearer(keys[0])), 403)
    response = client.delete("/api/keys", headers=ada)
    assert response.status_code == 200
    assert response.json == {"message": "Revoked 3 API keys", "revoked": 3}
    for key in keys:
        assert_envelope(ask(client, bearer(key), "gone"), 401, "Invalid API key")
    assert client.get("/api/keys", headers=ada).json == []
    # Bob's key is his own and keeps working; nothing left to revoke is no error.
    assert ask(client, bearer(bobs), "still works").status_code == 200
    assert client.delete("/api/keys", headers=ada).json["revoked"] == 0
    assert_envelope(client.delete("/api/keys"), 401)


def test_keys_outlive_a_password_change_and_logout_until_revoked(client, ada, new_key, auth):
    """What docs/security.md says: ending logins leaves API keys alone; revoke them too."""
    key = bearer(new_key().json["key"])
    user_id = auth.user_id(ada)
    change = {"password": "a brand new secret", "current_password": PASSWORD}
    assert client.put(f"/api/user/update/{user_id}", headers=ada, json=change).status_code == 200
    assert_envelope(client.get("/api/auth/me", headers=ada), 401)  # the login is over...
    assert ask(client, key, "still here").status_code == 200  # ...the key is not
    fresh = auth.login(password="a brand new secret")
    assert client.post("/api/auth/logout", headers=fresh).status_code == 200
    assert ask(client, key, "and still").status_code == 200
    assert client.delete("/api/keys", headers=auth.login(password="a brand new secret")).json == {
        "message": "Revoked 1 API key",
        "revoked": 1,
    }
    assert_envelope(ask(client, key, "gone"), 401)


def test_cli_revokes_all_of_a_users_keys(runner, client, ada, bob, new_key):
    keys = [new_key(f"k{n}").json["key"] for n in range(2)]
    bobs = new_key("bob's", headers=bob).json["key"]
    revoked = runner.invoke(args=["keys", "revoke-all", "ADA@example.com"])
    assert revoked.exit_code == 0, revoked.output
    assert "Revoked 2 API keys of ada@example.com" in revoked.output
    for key in keys:
        assert_envelope(ask(client, bearer(key), "gone"), 401)
    assert ask(client, bearer(bobs), "still works").status_code == 200
    missing = runner.invoke(args=["keys", "revoke-all", "nobody@example.com"])
    assert missing.exit_code != 0 and "nobody@example.com" in missing.output
