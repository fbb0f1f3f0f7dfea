"""The web chat at `/`: one HTML page and its static files, a client of the public API.

Nothing is built and nothing comes from another host: the page's modules and the vendored
libraries (static/vendor, each with its licence) are served from the package, gzip-compressed
when the browser accepts it, and revalidated on every load (an ETag), so an upgrade is seen at
once and an unchanged file costs a 304.
"""

import gzip
import hashlib
import mimetypes
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, abort, render_template, request

STATIC = Path(__file__).parent / "static"

# No inline script or style, no eval, nothing from another host; model output is sanitised
# before it reaches the page, and this stops whatever might slip through from loading or running.
WEB_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

bp = Blueprint("web", __name__, template_folder="templates")
# Read and compressed when the app is made (once per process, ~0.1 s), not by a visitor's
# first request.
bp.record_once(lambda _state: _assets())


@bp.after_request
def _page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = WEB_CSP
    return response


@bp.get("/")
def index():
    """The chat page; every view of it (chat, settings, usage) is a fragment of this URL."""
    response = Response(render_template("web/index.html"), mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/static/<path:filename>")
def static(filename: str):
    found = _assets().get(filename)
    if found is None:
        abort(404)
    raw, compressed, etag, mimetype = found
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    elif compressed is not None and "gzip" in request.accept_encodings:
        response = Response(compressed, mimetype=mimetype)
        response.headers["Content-Encoding"] = "gzip"
    else:
        response = Response(raw, mimetype=mimetype)
    response.set_etag(etag)
    response.vary.add("Accept-Encoding")
    response.headers["Cache-Control"] = "no-cache"
    return response


Asset = tuple[bytes, bytes | None, str, str]


@cache
def _assets() -> dict[str, Asset]:
    """Every static file: its bytes, their gzip (text only), ETag and type; read once per
    process (the folder is part of the package: about 200 KB)."""
    found = {}
    for path in sorted(STATIC.rglob("*")):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if path.suffix in {".js", ".mjs"}:
            mimetype = "text/javascript"
        if path.name.endswith("LICENSE"):
            mimetype = "text/plain"
        text = mimetype.startswith("text/") or mimetype == "image/svg+xml"
        compressed = gzip.compress(raw, 9, mtime=0) if text else None
        etag = hashlib.sha256(raw).hexdigest()[:32]
        found[path.relative_to(STATIC).as_posix()] = (raw, compressed, etag, mimetype)
    return found
