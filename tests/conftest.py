import pytest

from polygenix import create_app
from polygenix.extensions import db
from polygenix.user.service import create_user
from tests.helpers import PASSWORD

# Real hashing, at a cost that keeps a few hundred logins quick.
FAST_HASH = "pbkdf2:sha256:1000"


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYGENIX_INSTANCE_PATH", str(tmp_path / "instance"))
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-" + "s" * 40,
        "JWT_SECRET_KEY": "test-jwt-secret-key-" + "j" * 60,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'test.db'}",
        "PASSWORD_HASH_METHOD": FAST_HASH,
    }


@pytest.fixture
def app(config):
    app = create_app(config)
    with app.app_context():
        db.create_all()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class Auth:
    """Makes users through the real API and hands back their bearer headers."""

    def __init__(self, app, client):
        self.app = app
        self.client = client

    def register(self, email="ada@example.com", name="Ada Lovelace", password=PASSWORD):
        response = self.client.post(
            "/api/auth/register", json={"name": name, "email": email, "password": password}
        )
        assert response.status_code == 200, response.json
        return {"Authorization": f"Bearer {response.json['access_token']}"}

    def admin(self, email="root@example.com"):
        with self.app.app_context():
            create_user(name="Admin", email=email, password=PASSWORD, is_admin=True)
        return self.login(email)

    def login(self, email, password=PASSWORD):
        response = self.client.post(
            "/api/auth/login", data={"username": email, "password": password}
        )
        assert response.status_code == 200, response.json
        return {"Authorization": f"Bearer {response.json['access_token']}"}

    def user_id(self, headers):
        return self.client.get("/api/user/", headers=headers).json["id"]


@pytest.fixture
def auth(app, client):
    return Auth(app, client)
