"""The original web client polls GET /api/ai_chat/history every 30 s, without page parameters,
and shows what it gets: every session comes back, and an unchanged history costs a 304."""

import json

import pytest

from tests.helpers import ask, counted_statements, warm_up


@pytest.mark.parametrize("path", ["history", "sessions"])
def test_without_page_parameters_every_session_comes_back(client, ada, path):
    for number in range(1, 26):
        ask(client, ada, f"message {number}", session_id=number)
    response = client.get(f"/api/ai_chat/{path}", headers=ada)
    assert [s["chat_id"] for s in response.json] == list(range(25, 0, -1))
    pagination = json.loads(response.headers["X-Pagination"])
    assert pagination["total"] == 25 and pagination["total_pages"] == 1
    # With either parameter, pages as before.
    assert len(client.get(f"/api/ai_chat/{path}?page=2", headers=ada).json) == 5
    assert len(client.get(f"/api/ai_chat/{path}?page_size=10", headers=ada).json) == 10


@pytest.mark.parametrize("path", ["history", "sessions"])
def test_an_unchanged_listing_is_a_304_and_any_change_a_new_tag(client, ada, auth, path):
    url = f"/api/ai_chat/{path}"
    ask(client, ada, "first", session_id=1)
    first = client.get(url, headers=ada)
    tag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, no-cache"
    unchanged = client.get(url, headers=ada | {"If-None-Match": tag})
    assert unchanged.status_code == 304 and unchanged.data == b""
    assert unchanged.headers["ETag"] == tag
    # Each change shown in the listing gives it a new tag.
    changes = [
        lambda: ask(client, ada, "second", session_id=1),
        lambda: client.patch("/api/ai_chat/1", headers=ada, json={"title": "renamed"}),
        lambda: ask(client, ada, "elsewhere", session_id=2),
        lambda: client.delete("/api/ai_chat/2", headers=ada),
    ]
    for change in changes:
        assert change().status_code == 200
        fresh = client.get(url, headers=ada | {"If-None-Match": tag})
        assert fresh.status_code == 200 and fresh.headers["ETag"] != tag
        tag = fresh.headers["ETag"]
    # Another page, another user: other tags.
    assert client.get(url + "?page=1", headers=ada).headers["ETag"] != tag
    bob = auth.register("bob@example.com")
    assert client.get(url, headers=bob | {"If-None-Match": tag}).status_code == 200


def test_a_304_costs_one_small_query_beyond_the_token_check(app, client, ada):
    for number in range(1, 6):
        ask(client, ada, "hello", session_id=number)
    warm_up(client, ada)
    tag = client.get("/api/ai_chat/history", headers=ada).headers["ETag"]
    with counted_statements(app) as statements:
        response = client.get("/api/ai_chat/history", headers=ada | {"If-None-Match": tag})
    assert response.status_code == 304
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(queries) == 2, statements  # the token's user and revocation; the tag
