import pytest

from tests.helpers import operations

CONTRACT = {
    ("/api/auth/register", "post"),
    ("/api/auth/login", "post"),
    ("/api/auth/verify-token/{token_id}", "get"),
    ("/api/ai_chat/home", "get"),
    ("/api/ai_chat/history", "get"),
    ("/api/ai_chat/request", "post"),
    ("/api/ai_chat/{chat_id}", "delete"),
    ("/api/user/", "get"),
    ("/api/user/create", "post"),
    ("/api/user/all", "get"),
    ("/api/user/{user_id}", "get"),
    ("/api/user/email/{email}", "get"),
    ("/api/user/update/{user_id}", "put"),
}
EXTRA = {
    ("/api/auth/refresh", "post"),
    ("/api/auth/logout", "post"),
    ("/api/user/{user_id}", "delete"),
    ("/api/auth/me", "get"),
    ("/api/ai_chat/sessions", "get"),
    ("/api/ai_chat/search", "get"),
    ("/api/ai_chat/models", "get"),
    ("/api/ai_chat/{chat_id}", "get"),
    ("/api/ai_chat/{chat_id}", "patch"),
    ("/api/ai_chat/export", "get"),
    ("/api/ai_chat/{chat_id}/export", "get"),
    ("/api/ai_chat/{chat_id}/regenerate", "post"),
    ("/api/ai_chat/{chat_id}/messages/{message_id}", "put"),
    ("/api/keys", "post"),
    ("/api/keys", "get"),
    ("/api/keys", "delete"),
    ("/api/keys/{key_id}", "delete"),
    ("/api/ai_chat/attachments", "post"),
    ("/api/ai_chat/attachments/{attachment_id}", "get"),
    ("/api/ai_chat/attachments/{attachment_id}", "delete"),
    ("/api/usage", "get"),
    ("/api/admin/usage", "get"),
    ("/api/admin/users/{user_id}/limits", "get"),
    ("/api/admin/users/{user_id}/limits", "put"),
}
OPEN = {
    ("/api/auth/register", "post"),
    ("/api/auth/login", "post"),
    ("/api/auth/verify-token/{token_id}", "get"),
    ("/api/user/create", "post"),
}


@pytest.fixture
def spec(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json


def test_every_contract_endpoint_and_extra_is_documented(spec):
    assert {key for key, _ in operations(spec)} == CONTRACT | EXTRA


def test_every_operation_has_a_summary_and_error_responses(spec):
    for key, operation in operations(spec):
        assert operation.get("summary"), key
        responses = operation["responses"]
        assert {"200", "201"} & set(responses), key
        if key in OPEN:
            assert "security" not in operation, key
        else:
            assert operation["security"] == [{"bearerAuth": []}], key
            assert "401" in responses, key


@pytest.mark.parametrize(
    ("key", "codes"),
    [
        (("/api/auth/register", "post"), {"409", "422"}),
        (("/api/auth/login", "post"), {"401", "422"}),
        (("/api/user/all", "get"), {"401", "403", "422"}),
        (("/api/user/update/{user_id}", "put"), {"401", "404", "422"}),
        (("/api/ai_chat/request", "post"), {"401", "422", "503"}),
        (("/api/ai_chat/{chat_id}", "delete"), {"401", "404"}),
        (("/api/ai_chat/search", "get"), {"401", "422"}),
    ],
)
def test_error_responses_are_documented(spec, key, codes):
    operation = dict(operations(spec))[key]
    assert codes <= set(operation["responses"])


def test_bearer_scheme_and_error_envelope(spec):
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    error = spec["components"]["schemas"]["Error"]["properties"]
    assert {"code", "status", "message", "detail", "errors"} <= set(error)


def test_login_is_documented_as_a_form(spec):
    body = dict(operations(spec))[("/api/auth/login", "post")]["requestBody"]
    assert list(body["content"]) == ["application/x-www-form-urlencoded"]


def test_schemas_keep_the_originals_names(spec):
    assert {
        "MessageCreate",
        "MessageResponse",
        "ChatSessionResponse",
        "ShowUser",
        "User",
        "UserUpdate",
        "Token",
    } <= set(spec["components"]["schemas"])


def test_swagger_ui_is_served_from_this_server(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/openapi.json" in html
    assert "http://" not in html and "https://" not in html
    for asset in ["swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"]:
        assert f"/docs/assets/{asset}" in html
        response = client.get(f"/docs/assets/{asset}")
        assert response.status_code == 200 and len(response.data) > 1000
        response.close()


def test_root_is_the_web_chat_and_the_docs_stay_at_docs(client):
    response = client.get("/")
    assert response.status_code == 200
    assert "<title>PolyGenix</title>" in response.get_data(as_text=True)
    assert client.get("/docs").status_code == 200
