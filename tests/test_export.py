import json

from tests.helpers import assert_envelope


def test_export_one_session_as_markdown_and_json(client, auth):
    ada = auth.register("ada@example.com")
    for text in ("How do I export?", "And as JSON?"):
        body = {"content": text, "model": "echo", "session_id": 12}
        client.post("/api/ai_chat/request", headers=ada, json=body)

    markdown = client.get("/api/ai_chat/12/export", headers=ada)
    assert markdown.status_code == 200
    assert markdown.mimetype == "text/markdown"
    assert markdown.headers["Content-Disposition"] == 'attachment; filename="polygenix-chat-12.md"'
    text = markdown.get_data(as_text=True)
    assert text.startswith("# How do I export?\n")
    assert "- Chat: 12" in text and "- Model: echo/echo" in text
    assert text.index("How do I export?\n\n## echo/echo") < text.index("And as JSON?")

    as_json = client.get("/api/ai_chat/12/export?format=json", headers=ada)
    assert as_json.mimetype == "application/json"
    assert as_json.headers["Content-Disposition"].endswith('polygenix-chat-12.json"')
    session = json.loads(as_json.get_data(as_text=True))
    assert session == client.get("/api/ai_chat/12", headers=ada).json


def test_export_is_private_and_validated(client, auth):
    ada = auth.register("ada@example.com")
    client.post(
        "/api/ai_chat/request", headers=ada, json={"content": "x", "model": "echo", "session_id": 1}
    )
    eve = auth.register("eve@example.com")
    assert_envelope(client.get("/api/ai_chat/1/export", headers=eve), 404)
    assert_envelope(client.get("/api/ai_chat/1/export"), 401)
    assert_envelope(client.get("/api/ai_chat/1/export?format=pdf", headers=ada), 422)
