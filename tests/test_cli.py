import json

from sqlalchemy import func, select

from polygenix.extensions import db
from polygenix.models import ChatSession, Message, User


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


def seed(client, auth):
    ada = auth.register("ada@example.com", "Ada")
    for number, text in [(1, "first chat"), (2, "second chat")]:
        body = {"content": text, "model": "echo", "session_id": number}
        assert client.post("/api/ai_chat/request", headers=ada, json=body).status_code == 200
    return ada


def test_users_list_table_and_json(runner, auth):
    auth.register("ada@example.com", "Ada")
    auth.admin("root@example.com")
    table = runner.invoke(args=["users", "list"])
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[0].split() == ["ID", "EMAIL", "NAME", "ADMIN", "CREATED"]
    assert "ada@example.com" in lines[1] and "yes" not in lines[1]
    assert "root@example.com" in lines[2] and "yes" in lines[2]
    listed = json.loads(runner.invoke(args=["users", "list", "--json"]).output)
    assert [(u["email"], u["is_admin"]) for u in listed] == [
        ("ada@example.com", False),
        ("root@example.com", True),
    ]
    assert all("password" not in u and "password_hash" not in u for u in listed)


def test_users_delete_asks_then_deletes_everything(app, client, runner, auth):
    ada = seed(client, auth)
    refused = runner.invoke(args=["users", "delete", "ada@example.com"], input="n\n")
    assert refused.exit_code != 0
    assert client.get("/api/auth/me", headers=ada).status_code == 200
    done = runner.invoke(args=["users", "delete", "ADA@example.com", "--yes"])
    assert done.exit_code == 0 and "Deleted ada@example.com" in done.output
    with app.app_context():
        assert db.session.scalar(select(func.count(ChatSession.id))) == 0
        assert db.session.scalar(select(func.count(Message.id))) == 0
    assert client.get("/api/auth/me", headers=ada).status_code == 401
    missing = runner.invoke(args=["users", "delete", "nobody@example.com", "--yes"])
    assert missing.exit_code != 0 and "No user" in missing.output


def test_users_reset_password_revokes_tokens(client, runner, auth):
    ada = auth.register("ada@example.com")
    weak = runner.invoke(
        args=["users", "reset-password", "ada@example.com", "--password-stdin"], input="password\n"
    )
    assert weak.exit_code != 0 and "too common" in weak.output
    result = runner.invoke(
        args=["users", "reset-password", "ada@example.com", "--password-stdin"],
        input="brand new secret\n",
    )
    assert result.exit_code == 0, result.output
    assert client.get("/api/auth/me", headers=ada).status_code == 401
    auth.login("ada@example.com", "brand new secret")


def test_chats_export_json_and_markdown(client, runner, auth, tmp_path):
    seed(client, auth)
    exported = json.loads(runner.invoke(args=["chats", "export", "ada@example.com"]).output)
    assert exported["user"]["email"] == "ada@example.com"
    assert [s["chat_id"] for s in exported["sessions"]] == [1, 2]
    assert [m["content"] for m in exported["sessions"][0]["messages"]] == [
        "first chat",
        "Echo: first chat",
    ]
    out = tmp_path / "ada.md"
    result = runner.invoke(
        args=["chats", "export", "ada@example.com", "--format", "markdown", "--out", str(out)]
    )
    assert result.exit_code == 0
    text = out.read_text()
    assert text.startswith("# first chat\n") and "# second chat" in text
    assert "## You · " in text and "## echo/echo · " in text and "Echo: second chat" in text
    bad = runner.invoke(args=["chats", "export", "ada@example.com", "--format", "pdf"])
    assert bad.exit_code != 0
