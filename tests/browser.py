"""The web page in a real headless Chromium (Debian's), driven by Playwright.

Playwright never downloads a browser here: it is pointed at the system's Chromium (`CHROMIUM`,
or `chromium` on the PATH). Without one, the browser tests are skipped with a message saying
how to install it. Chromium starts with a fresh profile and everything that would reach the
internet switched off. Elements are found by their role and accessible name, the page's
contract with assistive technology.

Screenshots of the main screens go to `test-screenshots/<configuration>/` (not committed).
"""

import os
import shutil

import pytest

from tests.helpers import PASSWORD, ROOT, TEST_DATABASE_URL, TEST_REDIS_URL, serving

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
]
NO_BROWSER = (
    "no Chromium for the web page's browser tests: install it with "
    "`apt-get update && apt-get install -y chromium chromium-driver` (or set CHROMIUM to its path)"
)
WEB_SETTINGS = {"LOGIN_RATE_LIMIT": "1000/minute", "CHAT_RATE_LIMIT": "1000/minute"}


def chromium_path() -> str | None:
    return (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )


def configuration() -> str:
    if not TEST_DATABASE_URL:
        return "sqlite"
    return "postgresql-redis" if TEST_REDIS_URL else "postgresql"


SCREENSHOTS = ROOT / "test-screenshots" / configuration()


@pytest.fixture(scope="session")
def browser():
    executable = chromium_path()
    if executable is None:
        pytest.skip(NO_BROWSER)
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:  # pragma: no cover - the dev extra installs it
        pytest.skip("playwright is not installed: pip install -e '.[dev]'")
    # A machine whose cores are shared can be slow to draw; waits end as soon as they hold.
    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        # A new browser has a fresh, temporary profile (user-data-dir), deleted when it closes.
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def site(make_app, provider_config):
    """The app over real HTTP, every provider the fake one: `site(overrides)` gives
    (base URL, app); the first call's is kept for the test."""
    servers = []

    def start(overrides=None):
        app = make_app(provider_config | WEB_SETTINGS | (overrides or {}))
        server = serving(app)
        base = server.__enter__()
        servers.append(server)
        return base, app

    yield start
    for server in servers:
        server.__exit__(None, None, None)


class Page:
    """A browser tab on the site, with what its console said."""

    def __init__(self, context, base):
        self.context = context
        self.base = base
        self.tab = context.new_page()
        self.errors: list[str] = []
        self.tab.on("console", self._console)
        self.tab.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.tab.on("dialog", lambda dialog: self.errors.append(f"dialog: {dialog.message}"))

    def _console(self, message):
        if message.type in ("error", "warning"):
            self.errors.append(f"{message.type}: {message.text}")

    def __getattr__(self, name):
        return getattr(self.tab, name)

    def open(self, path="/"):
        self.tab.goto(self.base + path)
        self.tab.wait_for_selector("body[data-ready]")
        return self

    def reload(self):
        self.tab.reload()
        self.tab.wait_for_selector("body[data-ready]")

    def role(self, role, name, exact=True):
        return self.tab.get_by_role(role, name=name, exact=exact)

    def button(self, name):
        return self.role("button", name)

    def textbox(self, name):
        return self.role("textbox", name)

    def chats(self):
        return self.role("navigation", "Chats").get_by_role("link")

    def messages(self):
        return self.role("region", "Conversation").get_by_role("listitem")

    def sign_up(self, name="Ada", email="ada@example.com", password=PASSWORD):
        self.button("Create an account").click()
        self.textbox("Name").fill(name)
        self.textbox("Email").fill(email)
        self.textbox("Password").fill(password)
        self.button("Sign up").click()
        self.tab.wait_for_selector("body[data-view=app]")
        return self

    def log_in(self, email="ada@example.com", password=PASSWORD):
        self.textbox("Email").fill(email)
        self.textbox("Password").fill(password)
        self.button("Log in").click()
        self.tab.wait_for_selector("body[data-view=app]")
        return self

    def send(self, text, model=None):
        if model:
            self.role("combobox", "Model").select_option(model)
        self.textbox("Message").fill(text)
        self.textbox("Message").press("Enter")

    def wait_idle(self):
        """The turn under way is over (Stop gone, Send back)."""
        from playwright.sync_api import expect

        # Locators, not wait_for_function: its strings are eval'd in the page, which the
        # page's CSP forbids (an EvalError whenever the first check does not hold).
        self.button("Stop").wait_for(state="hidden")
        expect(self.button("Send")).to_be_enabled()

    def shot(self, name):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"))

    def assert_quiet(self, expected=()):
        """Nothing ran amiss: no error or warning in the console but the failed requests the
        test caused on purpose (each `expected` status, as Chromium reports it)."""
        unexpected = [
            e for e in self.errors if not any(f"status of {status} " in e for status in expected)
        ]
        assert unexpected == [], unexpected


@pytest.fixture
def tabs(browser):
    """`tabs(base)`: a new tab on the site; tabs of one test share one browser profile."""
    contexts = {}

    def open_tab(base, fresh=False):
        key = (base, f"fresh {len(contexts)}" if fresh else "shared")
        if key not in contexts:
            contexts[key] = browser.new_context(
                viewport={"width": 1280, "height": 800}, accept_downloads=True
            )
        return Page(contexts[key], base)

    yield open_tab
    for context in contexts.values():
        context.close()
