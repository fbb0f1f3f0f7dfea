from sqlalchemy import select

from polygenix.extensions import db
from polygenix.models import User


def get_user(app, email):
    with app.app_context():
        return db.session.scalar(select(User).where(User.email == email))


def test_create_admin_from_stdin(app, runner, auth):
    result = runner.invoke(
        args=[
            "users",
            "create",
            "--email",
            "Root@Example.com",
            "--name",
            "Root",
            "--admin",
            "--password-stdin",
        ],
        input="a strong password\n",
    )
    assert result.exit_code == 0, result.output
    assert "Created admin root@example.com" in result.output
    user = get_user(app, "root@example.com")
    assert user.is_admin and user.name == "Root"
    headers = auth.login("root@example.com", "a strong password")
    assert auth.client.get("/api/user/all", headers=headers).status_code == 200


def test_create_with_prompt(app, runner):
    result = runner.invoke(
        args=["users", "create", "--email", "u@example.com", "--name", "U"],
        input="prompted password\nprompted password\n",
    )
    assert result.exit_code == 0, result.output
    assert "prompted password" not in result.output
    user = get_user(app, "u@example.com")
    assert not user.is_admin
    with app.app_context():
        assert user.verify_password("prompted password")


def test_duplicate_email_fails(runner):
    args = ["users", "create", "--email", "u@example.com", "--name", "U", "--password-stdin"]
    assert runner.invoke(args=args, input="password one\n").exit_code == 0
    result = runner.invoke(args=args, input="password two\n")
    assert result.exit_code != 0
    assert "already registered" in result.output


def test_invalid_input_fails_with_reasons(app, runner):
    result = runner.invoke(
        args=["users", "create", "--email", "nope", "--name", "U", "--password-stdin"],
        input="short\n",
    )
    assert result.exit_code != 0
    assert "email" in result.output and "password" in result.output
    assert get_user(app, "nope") is None


def test_help(runner):
    result = runner.invoke(args=["users", "create", "--help"])
    assert result.exit_code == 0
    assert "--password-stdin" in result.output and "--admin" in result.output
