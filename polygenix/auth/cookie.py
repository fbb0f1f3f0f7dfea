"""The refresh token in a cookie, for the web page: scripts never see it.

A client opts in by sending `X-PolyGenix-Refresh-Cookie: 1` to `/api/auth/`. Register, login and
refresh then answer without `refresh_token` in the body and set it as an `HttpOnly`,
`SameSite=Strict` cookie for `/api/auth/` only (`Secure` when the page is served over https);
refresh reads it from there, and logout ends its login and clears it.

A cookie is sent by the browser whoever asks, so every opted-in request must show it comes from
the page itself: its `Origin` names this very host (and `Sec-Fetch-Site`, when sent, says
`same-origin`), or it is a 403 before anything else happens. The custom header cannot be sent
cross-site without a CORS preflight, which PolyGenix never grants for it. Without the header the
cookie is ignored and every endpoint works exactly as for any other client.
"""

from urllib.parse import urlsplit

from flask import Response, after_this_request, current_app, request
from flask_smorest import abort

HEADER = "X-PolyGenix-Refresh-Cookie"
PATH = "/api/auth/"


def requested() -> bool:
    return request.headers.get(HEADER) == "1"


def _origin() -> str | None:
    """The request's Origin when it is this server's own (the host the browser asked)."""
    origin = request.headers.get("Origin", "")
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != request.host.lower():
        return None
    if request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
        return None
    return origin


def refuse_cross_site() -> None:
    """Before any opted-in request: a 403 unless it comes from a page of this server."""
    if requested() and _origin() is None:
        abort(403, message="Cross-site request refused: the refresh cookie works only same-origin")


def _secure() -> bool:
    # Behind a proxy that ends TLS the request itself is plain http; the page's origin is not.
    return request.is_secure or (_origin() or "").startswith("https:")


def deliver(tokens: dict) -> dict:
    """The token answer: as it is, or, for an opted-in client, its refresh token in the cookie."""
    if not requested():
        return tokens
    refresh = tokens["refresh_token"]
    max_age = int(current_app.config["JWT_REFRESH_TOKEN_EXPIRES"].total_seconds())

    @after_this_request
    def _set(response: Response) -> Response:
        response.set_cookie(
            _name(),
            refresh,
            max_age=max_age,
            path=PATH,
            secure=_secure(),
            httponly=True,
            samesite="Strict",
        )
        return response

    return {k: v for k, v in tokens.items() if k != "refresh_token"}


def stored() -> str | None:
    """The refresh token of an opted-in request's cookie."""
    return request.cookies.get(_name()) if requested() else None


def clear() -> None:
    """Remove the cookie with this answer (logout)."""
    if not requested():
        return

    @after_this_request
    def _clear(response: Response) -> Response:
        response.delete_cookie(
            _name(), path=PATH, secure=_secure(), httponly=True, samesite="Strict"
        )
        return response


def _name() -> str:
    return current_app.config["JWT_REFRESH_COOKIE_NAME"]
