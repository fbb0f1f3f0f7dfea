"""The web page against hostile model output and cross-site use of its login, in a real browser;
and its headers and files over plain HTTP."""

import gzip
import re

import pytest
from playwright.sync_api import expect

from polygenix.web import WEB_CSP
from tests.fake_provider import openai_stream
from tests.helpers import OPENAI, serving

HOSTILE = [
    "<img src=x onerror=\"window.__pwned='img'\">\n\n",
    "[a link](javascript:window.__pwned='link') and ",
    "<a href=\"javascript:window.__pwned='anchor'\">an anchor</a>\n\n",
    "<svg><script>window.__pwned='svg'</script></svg>",
    "<svg onload=\"window.__pwned='svgload'\"><circle r=5 /></svg>\n\n",
    "![pic](javascript:window.__pwned='image') ![tracker](http://127.0.0.1:9/collect)\n\n",
    "<iframe src=\"javascript:window.__pwned='frame'\"></iframe>",
    "<details open ontoggle=\"window.__pwned='toggle'\">x</details>\n\n",
    "[data](data:text/html,<script>window.__pwned='data'</script>) ",
    "<style>body{display:none}</style><form action=/x><button>go</button></form>",
]


def assert_inert(page):
    """Nothing of the reply ran, loaded or became live markup."""
    conversation = page.role("region", "Conversation")
    assert page.evaluate("window.__pwned") is None
    for tag in ("img", "svg", "script", "iframe", "style", "form", "details"):
        assert conversation.locator(tag).count() == 0, tag
    for href in conversation.locator("a").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    ):
        assert href is None or re.match(r"^(https?:|mailto:|#)", href), href
    expect(page.locator("body")).to_be_visible()


@pytest.mark.slow
def test_hostile_model_output_never_runs(site, tabs, fake):
    base, _ = site()
    page = tabs(base).open().sign_up()
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(base) else None)
    fake.reply(chunks=openai_stream(HOSTILE, "gpt-4.1-mini"), gap=0.05)
    page.send("<img src=x onerror=\"window.__pwned='title'\"> hello", model=OPENAI)
    page.wait_idle()
    reply = page.messages().nth(1)
    expect(reply).to_contain_text("<img src=x onerror=")  # shown as text
    expect(reply).to_contain_text("an anchor")
    assert_inert(page)
    # The title, from the first message, is text too, in the sidebar and the heading.
    expect(page.chats()).to_have_text(["<img src=x onerror=\"window.__pwned='title'\"> hello"])
    # Clicking what is left of the links runs nothing either.
    reply.get_by_text("a link").click()
    reply.get_by_text("an anchor").click()
    page.wait_for_timeout(200)
    assert page.evaluate("window.__pwned") is None
    # Read back from the server, the stored reply renders the same.
    page.reload()
    expect(page.messages()).to_have_count(2)
    assert_inert(page)
    page.shot("11-hostile-reply")
    assert outside == []
    page.assert_quiet()


@pytest.mark.slow
def test_a_refresh_cookie_replayed_from_another_origin_is_refused_in_a_browser(site, tabs):
    base, app = site()
    page = tabs(base).open().sign_up()
    # Another origin on the same host (a different port: same site, so SameSite=Strict still
    # lets the browser send the cookie): its scripts try to use the login.
    evil_app = type(app)("evil")

    @evil_app.get("/")
    def _page():
        return "<!doctype html><title>evil</title><p>hello</p>"

    with serving(evil_app) as evil:
        attacker = page.context.new_page()
        attacker.goto(evil + "/")
        tried = attacker.evaluate(
            """async (target) => {
              const out = {};
              try {
                const r = await fetch(target + "/api/auth/refresh", {method: "POST",
                  credentials: "include", headers: {"X-PolyGenix-Refresh-Cookie": "1"}});
                out.withHeader = r.status;
              } catch (e) { out.withHeader = "blocked"; }
              const r = await fetch(target + "/api/auth/refresh", {method: "POST",
                credentials: "include", mode: "no-cors"});
              out.noCors = r.type;
              return out;
            }""",
            base,
        )
        attacker.close()
    assert tried == {"withHeader": "blocked", "noCors": "opaque"}
    # Replayed outside a browser with the cookie's value and the header: the Origin decides.
    cookie = next(c for c in page.context.cookies() if c["name"] == "polygenix_refresh")
    replay = page.context.request.post(
        base + "/api/auth/refresh",
        headers={
            "X-PolyGenix-Refresh-Cookie": "1",
            "Origin": evil,
            "Cookie": f"polygenix_refresh={cookie['value']}",
        },
    )
    assert replay.status == 403 and "access_token" not in replay.text()
    # Nothing was spent: the page itself still carries on its login after a reload.
    page.reload()
    expect(page.button("New chat")).to_be_visible()


# --- over plain HTTP -----------------------------------------------------------------------


def test_the_page_has_a_strict_csp_and_is_never_framed(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert csp == WEB_CSP
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == "'none'" and directives["default-src"] == "'none'"
    assert response.headers["X-Frame-Options"] == "DENY"
    html = response.get_data(as_text=True)
    # No inline script or style, no event handler attribute, nothing from another host.
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "<style" not in html and not re.search(r"\son[a-z]+=", html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    # The Swagger page keeps its own policy.
    assert client.get("/docs").headers["Content-Security-Policy"] != WEB_CSP


def test_static_files_are_compressed_revalidated_and_confined(client):
    plain = client.get("/static/js/app.js")
    assert plain.status_code == 200 and plain.mimetype == "text/javascript"
    assert "Content-Encoding" not in plain.headers
    assert plain.headers["Cache-Control"] == "no-cache"
    assert plain.headers["Content-Security-Policy"] == WEB_CSP
    packed = client.get("/static/js/app.js", headers={"Accept-Encoding": "gzip, br"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.data) == plain.data
    assert "Accept-Encoding" in packed.headers["Vary"]
    again = client.get("/static/js/app.js", headers={"If-None-Match": plain.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    for path in (
        "/static/../__init__.py",
        "/static/%2e%2e/__init__.py",
        "/static/js/../../__init__.py",
        "/static/nothing.js",
        "/static/",
        "/static/js",
    ):
        assert client.get(path).status_code == 404, path
    licences = client.get("/static/vendor/marked.LICENSE")
    assert licences.status_code == 200 and b"MIT" in licences.data


def test_the_first_page_is_under_150_kb_compressed(client):
    """Everything the log-in page loads (the page, its styles, every module it imports)."""
    html = client.get("/").get_data(as_text=True)
    wanted = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html))
    seen, total = set(), len(gzip.compress(html.encode()))
    while wanted:
        path = wanted.pop()
        seen.add(path)
        response = client.get(path, headers={"Accept-Encoding": "gzip"})
        assert response.status_code == 200, path
        total += len(response.data)
        if path.endswith((".js", ".mjs")):
            source = gzip.decompress(response.data).decode()
            folder = path.rsplit("/", 1)[0]
            for module in re.findall(r'(?:import|from)\s*\(?\s*"(\.{1,2}/[^"]+)"', source):
                resolved = folder
                for part in module.split("/"):
                    if part == "..":
                        resolved = resolved.rsplit("/", 1)[0]
                    elif part != ".":
                        resolved += "/" + part
                if resolved not in seen:
                    wanted.add(resolved)
    assert "/static/js/pages.js" in seen and "/static/vendor/purify.es.mjs" in seen
    assert total < 150 * 1024, total
