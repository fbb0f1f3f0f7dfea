"""Every operation in the OpenAPI spec, called on the owner's resources by: no token, an unrelated
user's token, an admin's token (API1 broken object level authorization, API5 function level).

A new route fails `test_the_matrix_covers_every_operation` until it is given its row here.
"""

import io

import pytest

from polygenix import create_app
from tests import images
from tests.helpers import PASSWORD, ask, assert_envelope, bearer, operations

OWNER = "owner@example.com"
CHAT = 4242  # the owner's session number; nobody else has one

# (path, method) -> expected status for (no token, unrelated user, admin)
MATRIX = {
    ("/api/auth/register", "post"): (200, 200, 200),
    ("/api/auth/login", "post"): (200, 200, 200),
    ("/api/auth/verify-token/{token_id}", "get"): (200, 200, 200),
    ("/api/auth/refresh", "post"): (401, 401, 401),  # an access token is not a refresh token
    ("/api/auth/logout", "post"): (401, 200, 200),
    ("/api/auth/me", "get"): (401, 200, 200),
    ("/api/user/", "get"): (401, 200, 200),
    ("/api/user/create", "post"): (200, 200, 200),
    ("/api/user/all", "get"): (401, 403, 200),
    ("/api/user/{user_id}", "get"): (401, 404, 200),
    ("/api/user/{user_id}", "delete"): (401, 404, 200),
    ("/api/user/email/{email}", "get"): (401, 404, 200),
    ("/api/user/update/{user_id}", "put"): (401, 404, 200),
    ("/api/ai_chat/home", "get"): (401, 200, 200),
    ("/api/ai_chat/models", "get"): (401, 200, 200),
    ("/api/ai_chat/history", "get"): (401, 200, 200),
    ("/api/ai_chat/sessions", "get"): (401, 200, 200),
    # Search finds only the caller's own: the admin and the other user find nothing of it.
    ("/api/ai_chat/search", "get"): (401, 200, 200),
    ("/api/ai_chat/request", "post"): (401, 200, 200),
    # Sessions are private, even from admins: someone else's number is simply not found.
    ("/api/ai_chat/{chat_id}", "get"): (401, 404, 404),
    ("/api/ai_chat/{chat_id}", "patch"): (401, 404, 404),
    ("/api/ai_chat/{chat_id}", "delete"): (401, 404, 404),
    ("/api/ai_chat/{chat_id}/export", "get"): (401, 404, 404),
    ("/api/ai_chat/{chat_id}/regenerate", "post"): (401, 404, 404),
    ("/api/ai_chat/{chat_id}/messages/{message_id}", "put"): (401, 404, 404),
    # Everything exported is the caller's own: an empty export for anyone else.
    ("/api/ai_chat/export", "get"): (401, 200, 200),
    # Keys too: each user sees and revokes only their own.
    ("/api/keys", "post"): (401, 201, 201),
    ("/api/keys", "get"): (401, 200, 200),
    ("/api/keys", "delete"): (401, 200, 200),  # one's own keys, whoever calls
    ("/api/keys/{key_id}", "delete"): (401, 404, 404),
    # Attachments are private, even from admins, as sessions are.
    ("/api/ai_chat/attachments", "post"): (401, 201, 201),
    ("/api/ai_chat/attachments/{attachment_id}", "get"): (401, 404, 404),
    ("/api/ai_chat/attachments/{attachment_id}", "delete"): (401, 404, 404),
    # Usage: one's own for everyone; everyone's, and anyone's limits, for admins only.
    ("/api/usage", "get"): (401, 200, 200),
    ("/api/admin/usage", "get"): (401, 403, 200),
    ("/api/admin/users/{user_id}/limits", "get"): (401, 403, 200),
    ("/api/admin/users/{user_id}/limits", "put"): (401, 403, 200),
}
CALLERS = ("none", "other", "admin")


def test_the_matrix_covers_every_operation(config):
    spec = create_app(config).test_client().get("/openapi.json").json
    assert {key for key, _ in operations(spec)} == set(MATRIX)


@pytest.fixture
def world(app, client, auth):
    token = auth.tokens(OWNER, "Owner")["access_token"]
    owner = bearer(token)
    ask(client, owner, "private", session_id=CHAT)
    [question, _] = client.get(f"/api/ai_chat/{CHAT}", headers=owner).json["messages"]
    key = client.post("/api/keys", headers=owner, json={"name": "private"}).json
    attachment = client.post(
        "/api/ai_chat/attachments",
        headers=owner,
        data={"file": (io.BytesIO(images.png()), "a.png")},
    ).json
    return {
        "owner_id": auth.user_id(owner),
        "owner_message": question["id"],
        "owner_key": key["id"],
        "owner_attachment": attachment["id"],
        "owner_token": token,
        "headers": {"none": {}, "other": auth.register("eve@example.com"), "admin": auth.admin()},
    }


def request_for(path, method, world, n):
    """The call, aimed at the owner's resources, with a valid body."""
    url = (
        path.replace("{user_id}", str(world["owner_id"]))
        .replace("{chat_id}", str(CHAT))
        .replace("{email}", OWNER)
        .replace("{token_id}", world["owner_token"])
        .replace("{key_id}", str(world["owner_key"]))
        .replace("{message_id}", str(world["owner_message"]))
        .replace("{attachment_id}", str(world["owner_attachment"]))
    )
    kwargs = {}
    if path in ("/api/auth/register", "/api/user/create"):
        kwargs["json"] = {"name": "N", "email": f"new{n}@example.com", "password": PASSWORD}
    elif path == "/api/auth/login":
        kwargs["data"] = {"username": OWNER, "password": PASSWORD}
    elif path == "/api/ai_chat/request":
        kwargs["json"] = {"content": "hello", "model": "echo"}
    elif path == "/api/ai_chat/attachments":
        kwargs["data"] = {"file": (io.BytesIO(images.gif()), "b.gif")}
    elif path == "/api/keys" and method == "post":
        kwargs["json"] = {"name": "mine"}
    elif path.endswith("/regenerate"):
        kwargs["json"] = {"model": "echo"}
    elif "/messages/" in path:
        kwargs["json"] = {"content": "private, edited", "model": "echo"}
    elif path.endswith("/limits") and method == "put":
        kwargs["json"] = {"token_budget": "100000/day"}
    elif path == "/api/ai_chat/search":
        kwargs["query_string"] = {"q": "private"}
    elif method == "patch":
        kwargs["json"] = {"title": "renamed"}
    elif method == "put":
        kwargs["json"] = {"name": "Renamed"}
    return url, kwargs


@pytest.mark.parametrize("who", CALLERS)
@pytest.mark.parametrize(("path", "method"), sorted(MATRIX))
def test_route_answers_each_caller_as_expected(client, world, path, method, who):
    url, kwargs = request_for(path, method, world, CALLERS.index(who))
    response = getattr(client, method)(url, headers=world["headers"][who], **kwargs)
    expected = MATRIX[(path, method)][CALLERS.index(who)]
    assert response.status_code == expected, (who, response.json)
    text = response.get_data(as_text=True)
    assert PASSWORD not in text and "pbkdf2" not in text and "password_hash" not in text
    if who == "other" and expected == 200 and "{" not in path:
        # An unrelated user succeeding on a collection route sees nothing of the owner's.
        assert "private" not in text and OWNER not in text


# Every admin-only operation: the ones an unrelated user is refused (403) in the matrix.
ADMIN_ONLY = sorted(key for key, expected in MATRIX.items() if expected[1] == 403)
MALFORMED_QUERY = {"page": "x", "page_size": "0", "group_by": "x", "since": "x", "user_id": "x"}
MALFORMED_BODY = {"models": "all", "token_budget": 5, "cost_budget": [], "unknown": 1}


def test_admin_only_operations_are_known():
    assert {path for path, _ in ADMIN_ONLY} >= {
        "/api/user/all",
        "/api/admin/usage",
        "/api/admin/users/{user_id}/limits",
    }


@pytest.mark.parametrize(("path", "method"), ADMIN_ONLY)
def test_admin_routes_refuse_others_before_reading_what_they_sent(client, world, path, method):
    """A non-admin's malformed request is a 403, not a 422 describing the admin API."""
    url, _ = request_for(path, method, world, 0)
    malformed = {"query_string": MALFORMED_QUERY}
    if method in ("post", "put", "patch"):
        malformed["json"] = MALFORMED_BODY
    response = getattr(client, method)(url, headers=world["headers"]["other"], **malformed)
    assert_envelope(response, 403, "Only an admin may do this")
    assert "errors" not in response.json
    # From an admin, the same request is judged on what it says.
    response = getattr(client, method)(url, headers=world["headers"]["admin"], **malformed)
    assert response.status_code != 403
