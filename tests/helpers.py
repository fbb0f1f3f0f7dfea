"""Assertions and values the test modules share."""

PASSWORD = "correct horse battery"


def assert_envelope(response, code, message=None):
    """The one error shape: code, status, message, and detail equal to message."""
    assert response.status_code == code
    assert response.is_json, response.data[:200]
    body = response.json
    assert body["code"] == code
    assert isinstance(body["status"], str) and body["status"]
    assert body["detail"] == body["message"]
    if message is not None:
        assert message in body["message"]
    return body
