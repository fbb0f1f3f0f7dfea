"""Browser-facing protections: security headers on every response, CORS for listed origins only,
and the real client address behind a trusted proxy."""

from flask import Flask, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from .errors import error_response

# The API returns JSON only: nothing may be loaded, framed or run from it.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI runs its own files plus one inline script (its configuration) from this server.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)


REVALIDATE = "private, no-cache"


def init_security(app: Flask) -> None:
    if app.config["PROXY_FIX_X_FOR"]:
        # Trust exactly this many proxies' X-Forwarded-For entries (rate limits count real IPs).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"])
    if app.config["CORS_ORIGINS"]:
        CORS(
            app,
            origins=app.config["CORS_ORIGINS"],
            allow_headers=["Authorization", "Content-Type", "Accept"],
            expose_headers=["X-Pagination", "Retry-After"],
            max_age=600,
        )

    @app.before_request
    def _no_nul_in_the_url():
        # PostgreSQL cannot store or compare text holding NUL: refused before any lookup.
        if "\x00" in request.path or any("\x00" in v for v in request.args.values()):
            return error_response(400, "The URL must not contain NUL characters (%00)")
        return None

    @app.after_request
    def _headers(response):
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        docs = request.path == "/docs" or request.path.startswith("/docs/")
        headers.setdefault("Content-Security-Policy", DOCS_CSP if docs else API_CSP)
        if request.path.startswith("/api/auth/"):
            # Tokens and credentials must not be kept by browsers or shared caches.
            headers["Cache-Control"] = "no-store"
            headers["Pragma"] = "no-cache"
        if "Authorization" in request.headers:
            # One user's records must never be served from a cache to anyone: no-store, unless
            # the view offers conditional requests (an ETag), when a browser may keep its own
            # copy and must ask again each time.
            if headers.get("Cache-Control") != REVALIDATE:
                headers["Cache-Control"] = "no-store"
            response.vary.add("Authorization")
        return response
