"""The original's Swagger flow, step by step, as its own clients send it."""

import json

from tests.helpers import bearer


def test_seed_flow(client):
    registered = client.post(
        "/api/auth/register",
        json={"name": "Tim joe", "email": "tim@joe.com", "password": "tims password"},
    )
    assert registered.status_code == 200
    assert registered.json["token_type"] == "bearer"

    login = client.post(
        "/api/auth/login",
        data="grant_type=password&username=tim%40joe.com&password=tims+password&scope="
        "&client_id=string&client_secret=string",
        content_type="application/x-www-form-urlencoded",
    )
    assert login.status_code == 200
    token = login.json["access_token"]
    headers = bearer(token)

    verified = client.get(f"/api/auth/verify-token/{token}")
    assert verified.json == {"message": "Token is valid"}

    home = client.get("/api/ai_chat/home", headers=headers)
    assert home.json["data"]["message"].endswith("PolyGenix - Tim joe")

    me = client.get("/api/user/", headers=headers).json
    assert (me["name"], me["email"]) == ("Tim joe", "tim@joe.com")

    # The web client picks a random number for a new chat and sends chat_id too.
    first = client.post(
        "/api/ai_chat/request",
        headers=headers,
        json={
            "content": "whats the time now! ",
            "model": "echo",
            "session_id": 123456,
            "chat_id": None,
        },
    )
    assert first.status_code == 200
    assert first.json["session_id"] == 123456 and first.json["is_bot"] is True
    second = client.post(
        "/api/ai_chat/request",
        headers=headers,
        json={"content": "and tomorrow?", "model": "echo", "session_id": 123456, "chat_id": 123456},
    )
    assert second.json["content"] == "Echo: and tomorrow?"

    history = client.get("/api/ai_chat/history", headers=headers)
    assert history.status_code == 200
    assert json.loads(history.headers["X-Pagination"])["total"] == 1
    [session] = history.json
    assert session["chat_id"] == 123456
    assert session["title"] == "whats the time now!"
    assert [m["is_bot"] for m in session["messages"]] == [False, True, False, True]
    assert session["messages"][2]["content"] == "and tomorrow?"

    deleted = client.delete("/api/ai_chat/123456", headers=headers)
    assert deleted.json == {"message": "Chat session deleted successfully"}
    assert client.get("/api/ai_chat/history", headers=headers).json == []
