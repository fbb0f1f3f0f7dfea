import pytest

from polygenix import create_app
from tests.helpers import UNREACHABLE_DATABASES, assert_envelope


def test_unknown_route_is_a_json_404(client):
    body = assert_envelope(client.get("/api/nothing/here"), 404)
    assert set(body) == {"code", "status", "message", "detail"}
    assert body["status"] == "Not Found"


def test_wrong_method_is_a_json_405_with_allow(client):
    response = client.put("/api/auth/login")
    assert_envelope(response, 405)
    assert "POST" in response.headers["Allow"]


def test_body_over_max_content_length_is_413(client, auth):
    headers = auth.register()
    response = client.post(
        "/api/ai_chat/request",
        headers=headers,
        json={"content": "x" * (1024 * 1024 + 1), "model": "echo"},
    )
    assert_envelope(response, 413)


def test_max_content_length_is_configurable(make_app):
    app = make_app({"MAX_CONTENT_LENGTH": 2048})
    response = app.test_client().post(
        "/api/auth/register", json={"name": "n", "email": "a@b.co", "password": "p" * 3000}
    )
    assert_envelope(response, 413)


def test_invalid_json_is_a_400_envelope(client):
    response = client.post("/api/auth/register", data=b'{"name": ', content_type="application/json")
    body = assert_envelope(response, 400)
    assert "Invalid JSON" in body["message"]


def test_validation_error_carries_errors_by_location(client):
    body = assert_envelope(client.post("/api/auth/register", json={"email": "bad"}), 422)
    assert body["status"] == "Unprocessable Entity"
    assert body["errors"]["json"]["email"] == ["Not a valid email address."]
    assert body["message"].startswith("Invalid input: ")


@pytest.fixture
def crashing_app(make_app):
    app = make_app({"TESTING": False})

    @app.get("/boom")
    def boom():
        raise RuntimeError("SELECT secret FROM users -- internal detail")

    return app


def test_unhandled_error_is_a_500_envelope_without_internals(crashing_app, caplog):
    response = crashing_app.test_client().get("/boom")
    body = assert_envelope(response, 500)
    text = response.get_data(as_text=True)
    assert "SELECT" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert body["status"] == "Internal Server Error"
    # The details go to the log instead.
    assert "RuntimeError" in caplog.text


@pytest.mark.parametrize("url", UNREACHABLE_DATABASES)
def test_database_down_is_503_with_retry_after(config, url):
    app = create_app(config | {"SQLALCHEMY_DATABASE_URI": url, "TESTING": False})
    response = app.test_client().post(
        "/api/auth/register", json={"name": "A", "email": "a@b.co", "password": "long enough"}
    )
    body = assert_envelope(response, 503, "Database unavailable")
    assert response.headers["Retry-After"] == "1"
    assert "psycopg" not in body["message"] and "sqlite" not in body["message"].lower()
