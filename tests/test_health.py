import time

import pytest

from polygenix import create_app
from tests.helpers import TEST_REDIS_URL, UNREACHABLE_DATABASES, assert_envelope, closed_port


def test_readyz_checks_the_database_and_redis(client, app):
    response = client.get("/readyz")
    assert response.status_code == 200
    shared = {"redis": "ok", "rate_limits": "ok"}
    expected = {"database": "ok"} | (shared if app.config["REDIS_URL"] else {})
    assert response.json == {"status": "ready", "checks": expected}


def test_readyz_reports_an_unreachable_redis_as_degraded(make_app):
    """Without Redis PolyGenix keeps serving (rate limits counted per process meanwhile): still
    ready, but degraded."""
    client = make_app({"REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"}).test_client()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {
        "status": "degraded",
        "checks": {"database": "ok", "redis": "unavailable", "rate_limits": "per_process"},
    }


@pytest.mark.parametrize("url", UNREACHABLE_DATABASES)
def test_database_down_is_alive_but_not_ready(config, url):
    app = create_app(config | {"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": TEST_REDIS_URL})
    client = app.test_client()
    # Liveness touches nothing, so a database outage does not get the process restarted.
    assert client.get("/healthz").json == {"status": "ok"}
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 2
    body = assert_envelope(response, 503, "database unavailable")
    assert body["checks"]["database"] == "unavailable"
    assert response.headers["Retry-After"] == "1"
