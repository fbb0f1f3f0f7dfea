import json

import pytest
import sqlalchemy as sa

from polygenix.extensions import db
from polygenix.models import ChatSession, Message, User
from tests.helpers import (
    PASSWORD,
    TEST_DATABASE_URL,
    FakeClock,
    assert_envelope,
    bearer,
    in_thread,
    wait_for,
)

ECHO = {"model": "echo", "content": "hello"}


@pytest.fixture
def people(auth):
    """Two ordinary users and an admin, as bearer headers, with their ids."""
    owner = auth.register("owner@example.com", "Owner")
    other = auth.register("other@example.com", "Other")
    admin = auth.admin("root@example.com")
    return {
        "owner": owner,
        "other": other,
        "admin": admin,
        "none": {},
        "owner_id": auth.user_id(owner),
    }


def test_get_caller(client, people):
    body = client.get("/api/user/", headers=people["owner"]).json
    assert body["email"] == "owner@example.com"
    assert set(body) == {"id", "name", "email", "is_admin", "created_at"}


def test_create_user_is_open_and_returns_show_user(client):
    response = client.post(
        "/api/user/create",
        json={"name": "mary Joe", "email": "mary@joe.com", "password": "marys password"},
    )
    assert response.status_code == 200
    assert response.json["name"] == "mary Joe"
    assert response.json["email"] == "mary@joe.com"
    assert response.json["is_admin"] is False
    assert "password" not in response.json


def test_create_user_conflict_and_no_mass_assignment(client):
    body = {"name": "mary", "email": "mary@joe.com", "password": "marys password"}
    assert client.post("/api/user/create", json=body).status_code == 200
    assert_envelope(client.post("/api/user/create", json=body | {"email": "MARY@joe.com"}), 409)
    for field, value in [
        ("is_admin", True),
        ("id", 99),
        ("password_hash", "x"),
        ("created_at", "2020-01-01T00:00:00Z"),
    ]:
        response = client.post(
            "/api/user/create", json=body | {"email": "new@joe.com", field: value}
        )
        assert field in assert_envelope(response, 422)["errors"]["json"]


# (who, expected status) for each route; the owner is the record's own user.
MATRIX = {
    "get_by_id": {"owner": 200, "other": 404, "admin": 200, "none": 401},
    "get_by_email": {"owner": 200, "other": 404, "admin": 200, "none": 401},
    "update_name": {"owner": 200, "other": 404, "admin": 200, "none": 401},
    "list_all": {"owner": 403, "other": 403, "admin": 200, "none": 401},
    "me": {"owner": 200, "other": 200, "admin": 200, "none": 401},
}


def call(client, route, owner_id, headers):
    if route == "get_by_id":
        return client.get(f"/api/user/{owner_id}", headers=headers)
    if route == "get_by_email":
        return client.get("/api/user/email/OWNER@example.com", headers=headers)
    if route == "update_name":
        return client.put(f"/api/user/update/{owner_id}", headers=headers, json={"name": "New"})
    if route == "list_all":
        return client.get("/api/user/all", headers=headers)
    return client.get("/api/user/", headers=headers)


@pytest.mark.parametrize(
    ("route", "who"), [(route, who) for route, row in MATRIX.items() for who in row]
)
def test_authorization_matrix(client, people, route, who):
    response = call(client, route, people["owner_id"], people[who])
    expected = MATRIX[route][who]
    assert response.status_code == expected, response.json
    if expected >= 400:
        assert_envelope(response, expected)
    if expected == 404:
        # Someone else's record answers exactly as a record that does not exist.
        missing = client.get("/api/user/999", headers=people[who])
        assert response.json["message"] == missing.json["message"] == "User not found"
    if expected == 200 and route != "list_all" and route != "me":
        assert response.json["id"] == people["owner_id"]


def test_other_user_cannot_change_owner(client, people, app):
    client.put(
        f"/api/user/update/{people['owner_id']}",
        headers=people["other"],
        json={"name": "Hacked", "password": "hacked password"},
    )
    body = client.get("/api/user/", headers=people["owner"]).json
    assert body["name"] == "Owner"
    assert (
        client.post(
            "/api/auth/login", data={"username": "owner@example.com", "password": PASSWORD}
        ).status_code
        == 200
    )


def test_list_all_paginates(client, people):
    response = client.get("/api/user/all?page_size=2", headers=people["admin"])
    assert [u["email"] for u in response.json] == ["owner@example.com", "other@example.com"]
    assert json.loads(response.headers["X-Pagination"])["total"] == 3
    far = client.get("/api/user/all?page=18446744073709551617", headers=people["admin"])
    assert far.status_code == 200 and far.json == []


def test_unknown_id_for_admin_is_404(client, people):
    assert_envelope(client.get("/api/user/999", headers=people["admin"]), 404)
    assert_envelope(client.get("/api/user/email/nobody@x.com", headers=people["admin"]), 404)


def test_ids_out_of_range_are_404_not_500(client, people):
    for path in ["/api/user/0", "/api/user/99999999999"]:
        assert_envelope(client.get(path, headers=people["admin"]), 404)
    response = client.put(
        "/api/user/update/99999999999", headers=people["admin"], json={"name": "x"}
    )
    assert_envelope(response, 404)


def test_update_name_only(client, people):
    response = client.put(
        f"/api/user/update/{people['owner_id']}",
        headers=people["owner"],
        json={"name": "  John Doe ", "password": None},
    )
    assert response.status_code == 200
    assert response.json["name"] == "John Doe"


def test_own_password_change_needs_current_password(client, people, auth):
    """With a token that is not fresh (refreshed; see below for fresh logins)."""
    url = f"/api/user/update/{people['owner_id']}"
    refresh = auth.login_tokens("owner@example.com")["refresh_token"]
    owner = bearer(client.post("/api/auth/refresh", headers=bearer(refresh)).json["access_token"])
    missing = client.put(url, headers=owner, json={"password": "new password 1"})
    assert "current_password" in assert_envelope(missing, 422)["errors"]["json"]
    wrong = client.put(
        url,
        headers=owner,
        json={"password": "new password 1", "current_password": "not it at all"},
    )
    assert "incorrect" in assert_envelope(wrong, 422)["message"]
    auth.login("owner@example.com")  # unchanged so far
    ok = client.put(
        url,
        headers=owner,
        json={"password": "new password 1", "current_password": PASSWORD},
    )
    assert ok.status_code == 200
    auth.login("owner@example.com", "new password 1")


def test_admin_resets_someone_elses_password_without_theirs(client, people, auth):
    response = client.put(
        f"/api/user/update/{people['owner_id']}",
        headers=people["admin"],
        json={"password": "set by admin"},
    )
    assert response.status_code == 200
    auth.login("owner@example.com", "set by admin")


def test_update_rejects_mass_assignment_and_weak_password(client, people):
    url = f"/api/user/update/{people['owner_id']}"
    for body in [{"is_admin": True}, {"email": "x@y.com"}, {"id": 5}]:
        assert_envelope(client.put(url, headers=people["owner"], json=body), 422)
    weak = client.put(
        url, headers=people["owner"], json={"password": "short", "current_password": PASSWORD}
    )
    assert "password" in assert_envelope(weak, 422)["errors"]["json"]
    assert client.get("/api/user/", headers=people["owner"]).json["is_admin"] is False


def test_no_response_contains_a_password_hash(client, people):
    for path in ["/api/user/", f"/api/user/{people['owner_id']}", "/api/user/all"]:
        text = client.get(path, headers=people["admin"]).get_data(as_text=True)
        assert "pbkdf2" not in text and "password" not in text


# --- changing one's password without the current one, just after logging in ------------------


def update(client, headers, user_id, **body):
    return client.put(f"/api/user/update/{user_id}", headers=headers, json=body)


@pytest.mark.parametrize("how", ["register", "login"])
def test_a_fresh_login_changes_its_password_without_the_current_one(client, auth, how):
    """What the original web client's profile page sends: the name and the new password, no
    current_password. Within PASSWORD_CHANGE_FRESH_MINUTES of typing the password, that is
    enough, and the name change in the same request is applied too."""
    headers = auth.register("ada@example.com", "Ada")
    if how == "login":
        headers = auth.login("ada@example.com")
    user_id = auth.user_id(headers)
    response = update(client, headers, user_id, name="Ada L.", password="a brand new secret")
    assert response.status_code == 200 and response.json["name"] == "Ada L."
    fresh = auth.login("ada@example.com", "a brand new secret")
    assert client.get("/api/user/", headers=fresh).json["name"] == "Ada L."
    assert_envelope(client.get("/api/user/", headers=headers), 401)  # earlier tokens revoked
    # Given all the same, a wrong current password is refused as ever.
    wrong = update(client, fresh, user_id, password="another secret", current_password="nope")
    assert "incorrect" in assert_envelope(wrong, 422)["message"]


def assert_needs_current_password(client, headers, user_id):
    response = update(client, headers, user_id, name="Changed", password="a brand new secret")
    body = assert_envelope(response, 422, "current password is required")
    assert "current_password" in body["errors"]["json"]


def test_a_refreshed_token_needs_the_current_password(client, auth):
    tokens = auth.tokens("ada@example.com", "Ada")
    refreshed = client.post("/api/auth/refresh", headers=bearer(tokens["refresh_token"])).json
    headers = bearer(refreshed["access_token"])
    user_id = auth.user_id(headers)
    assert_needs_current_password(client, headers, user_id)
    assert client.get("/api/user/", headers=headers).json["name"] == "Ada"  # nothing applied
    auth.login("ada@example.com")  # the password is unchanged


def test_a_login_older_than_the_window_needs_the_current_password(make_app, auth):
    clock = FakeClock()
    client = make_app({"CLOCK": clock, "PASSWORD_CHANGE_FRESH_MINUTES": 10}).test_client()
    ada = auth.register("ada@example.com", "Ada", client=client)
    bob = auth.register("bob@example.com", "Bob", client=client)
    clock.advance(10 * 60 - 1)
    response = update(client, bob, auth.user_id(bob, client=client), password="bob's new secret")
    assert response.status_code == 200
    clock.advance(2)
    assert_needs_current_password(client, ada, auth.user_id(ada, client=client))


def test_no_login_is_fresh_when_the_window_is_zero(make_app, auth):
    client = make_app({"PASSWORD_CHANGE_FRESH_MINUTES": 0}).test_client()
    ada = auth.register("ada@example.com", "Ada", client=client)
    assert_needs_current_password(client, ada, auth.user_id(ada, client=client))


def test_an_api_key_never_changes_a_password(client, auth):
    headers = auth.register("ada@example.com", "Ada")
    key = client.post("/api/keys", headers=headers, json={"name": "tool"}).json["key"]
    response = update(client, bearer(key), auth.user_id(headers), password="a brand new secret")
    assert_envelope(response, 403)
    auth.login("ada@example.com")  # the password is unchanged


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL's deadlock detection")
def test_an_account_deletion_ended_by_a_deadlock_is_sent_again(app, client, auth):
    """A write of the user's that locks one of their messages, then their row (a row naming
    them inserted: its foreign key's key share), while the deletion's cascade waits for that
    message: PostgreSQL ends the deletion, which waited first. The server deletes again, behind
    the write, and answers 200; nothing of the account is left."""
    ada = auth.register()
    ada_id = auth.user_id(ada)
    assert client.post("/api/ai_chat/request", headers=ada, json=ECHO).status_code == 200
    with app.app_context(), db.engine.connect() as write, db.engine.connect() as watch:
        write.execute(sa.text("SET LOCAL lock_timeout = '10s'"))  # a wait fails, never hangs
        owned = sa.select(ChatSession.id).where(ChatSession.user_id == ada_id)
        write.execute(sa.update(Message).where(Message.session_id.in_(owned)).values(content="x"))
        pid = write.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        deletion = in_thread(
            lambda: app.test_client().delete(f"/api/user/{ada_id}", headers=ada).status_code
        )
        # pg_locks, not pg_stat_activity: a transaction sees the latter as it first read it.
        blocked = sa.text("SELECT count(*) FROM pg_locks WHERE :p = ANY(pg_blocking_pids(pid))")
        wait_for(lambda: watch.execute(blocked, {"p": pid}).scalar(), what="the deletion waiting")
        # Waits until the deadlock ends the deletion (after its deadlock_timeout), then holds.
        user = sa.select(User.id).where(User.id == ada_id)
        write.execute(user.with_for_update(key_share=True))
        write.commit()
    assert deletion() == 200
    with app.app_context():
        assert db.session.get(User, ada_id) is None
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 0
