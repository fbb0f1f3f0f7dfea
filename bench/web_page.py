"""The web chat's weight and speed in Debian's headless Chromium.

PolyGenix runs under gunicorn (the project's gunicorn.conf.py, two workers) on a fresh, migrated
SQLite file. Each sample is a new browser profile (nothing cached) loading a page, timed from
the start of navigation to the moment the page's script has finished starting and the page
answers input (`body[data-ready]`, set by app.js once its handlers are in place and its first
view is shown):

- the log-in page, as a first visit sees it;
- a logged-in reload (the login carried on through the refresh cookie) opening a chat of 20
  messages;
- opening a chat of 1,000 messages from the sidebar (until its last message is shown), and
  scrolling it to its first message.

Sizes are what Chromium received for the log-in page: every response body as sent (gzip) and
decoded. Medians of --samples runs.

    .venv/bin/python bench/web_page.py
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402
from sqlalchemy import select  # noqa: E402

from polygenix import create_app  # noqa: E402
from polygenix.extensions import db  # noqa: E402
from polygenix.models import ChatSession, Message, User  # noqa: E402
from tests.browser import CHROMIUM_ARGS, chromium_path  # noqa: E402
from tests.gunicorn_server import served  # noqa: E402

PASSWORD = "correct horse battery"
READY = "body[data-ready]"
SINCE_NAVIGATION = "performance.now()"


def seed(env: dict[str, str], email: str) -> None:
    """Two chats for `email`: 1,000 messages and 20 messages, written through the models."""
    os.environ.update(env)
    app = create_app()
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        for number, count in ((1, 1000), (2, 20)):
            session = ChatSession(user_id=user.id, number=number, title=f"{count} messages")
            db.session.add(session)
            db.session.flush()
            db.session.add_all(
                Message(
                    session_id=session.id,
                    is_bot=n % 2 == 1,
                    content=f"Message {n}: some **Markdown** with `code` and a list:\n- a\n- b",
                )
                for n in range(count)
            )
        db.session.commit()
        db.engine.dispose()


def login_page(browser, base: str) -> tuple[float, int, int]:
    """(ms to ready, bytes sent, bytes decoded) of a first visit."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(base + "/")
    page.wait_for_selector(READY)
    ready = page.evaluate(SINCE_NAVIGATION)
    sizes = page.evaluate(
        """() => performance.getEntriesByType("navigation").concat(
             performance.getEntriesByType("resource"))
           .map(e => [e.encodedBodySize, e.decodedBodySize])"""
    )
    context.close()
    return ready, sum(s[0] for s in sizes), sum(s[1] for s in sizes)


def logged_in(browser, base: str, email: str) -> tuple[float, float, float]:
    """(ms to ready on a reload opening a 20-message chat, ms to open the 1,000-message chat,
    ms to scroll it to its first message)."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(base + "/")
    page.wait_for_selector(READY)
    page.get_by_role("textbox", name="Email").fill(email)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("body[data-view=app]")
    page.goto(base + "/#/chat/2")
    page.reload()
    page.wait_for_selector(READY)
    page.wait_for_selector("#messages li[data-index='19']")
    reload_ready = page.evaluate(SINCE_NAVIGATION)
    started = page.evaluate("performance.now()")
    page.get_by_role("link", name="1000 messages").click()
    page.wait_for_selector("#messages li[data-index='999']")
    opened = page.evaluate("performance.now()") - started
    scrolled = page.evaluate(
        """() => new Promise((resolve) => {
             const start = performance.now();
             const pane = document.getElementById("conversation");
             const step = () => {
               if (document.querySelector("#messages li[data-index='0']")) {
                 resolve(performance.now() - start);
                 return;
               }
               pane.scrollTop = 0;
               requestAnimationFrame(step);
             };
             step();
           })"""
    )
    context.close()
    return reload_ready, opened, scrolled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    executable = chromium_path()
    if executable is None:
        sys.exit("Chromium is needed: apt-get install -y chromium")
    folder = Path(tempfile.mkdtemp(prefix="polygenix-web-bench-"))
    url = f"sqlite:///{folder / 'bench.db'}"
    env = os.environ | {
        "DATABASE_URL": url,
        "POLYGENIX_INSTANCE_PATH": str(folder / "instance"),
        "SECRET_KEY": "s" * 48,
        "JWT_SECRET_KEY": "j" * 64,
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        "LOGIN_RATE_LIMIT": "10000/minute",
        "WEB_CONCURRENCY": "2",
    }
    flask = [sys.executable, "-m", "flask", "--app", "polygenix"]
    subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    email = "bench@example.com"
    create = [*flask, "users", "create", "--name", "Bench", "--email", email, "--password-stdin"]
    subprocess.run(
        create, cwd=ROOT, env=env, check=True, capture_output=True, input=f"{PASSWORD}\n".encode()
    )
    seed(env, email)
    try:
        with served("wsgi:app", env, "/healthz") as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_ARGS
            )
            login_page(browser, base)  # the server's first requests warm it up
            first = [login_page(browser, base) for _ in range(args.samples)]
            later = [logged_in(browser, base, email) for _ in range(args.samples)]
            browser.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"samples: {args.samples}")
    print(f"log-in page: sent {first[0][1] / 1024:.1f} KB, decoded {first[0][2] / 1024:.1f} KB")
    report("log-in page ready", [r[0] for r in first])
    report("logged-in reload with a 20-message chat ready", [r[0] for r in later])
    report("1,000-message chat opened", [r[1] for r in later])
    report("scrolled to its first message", [r[2] for r in later])


def report(what: str, timings: list[float]) -> None:
    print(f"{what}: {statistics.median(timings):.0f} ms median, max {max(timings):.0f} ms")


if __name__ == "__main__":
    main()
