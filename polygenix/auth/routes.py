from flask.views import MethodView
from flask_jwt_extended import get_jwt
from flask_smorest import abort

from ..api import Blueprint, NoticeSchema
from ..limits import per_ip, per_ip_and_account
from ..user.schemas import ShowUserSchema, UserSchema
from ..user.service import create_user
from . import cookie
from .access import current_user
from .revocation import revoke_family, spend
from .schemas import LoginFormSchema, LogoutSchema, TokenSchema
from .tokens import authenticate, issue_tokens, load_user, valid_payload

blp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Accounts and tokens.")
blp.before_request(cookie.refuse_cross_site)


@blp.route("/register")
class Register(MethodView):
    @per_ip_and_account
    @blp.arguments(UserSchema())
    @blp.response(200, TokenSchema)
    @blp.errors(409, 429)
    def post(self, data):
        """Create an account and log it in"""
        return cookie.deliver(issue_tokens(create_user(**data), fresh=True))


@blp.route("/login")
class Login(MethodView):
    @per_ip
    @blp.arguments(LoginFormSchema(), location="form")
    @blp.response(200, TokenSchema)
    @blp.errors(401, 429)
    def post(self, form):
        """Log in with the OAuth2 password form (`username` is the email)"""
        user = authenticate(form["username"], form["password"])
        if user is None:
            abort(401, message="Incorrect email or password")
        return cookie.deliver(issue_tokens(user, fresh=True))


@blp.route("/verify-token/<token_id>")
class VerifyToken(MethodView):
    # A token in a URL ends up in access logs and browser history; kept for old clients only.
    @blp.doc(deprecated=True)
    @blp.response(200, NoticeSchema)
    @blp.errors(401)
    def get(self, token_id):
        """Check an access token given in the path (deprecated: use GET /api/auth/me)"""
        payload = valid_payload(token_id, "access")
        if payload is None or load_user(payload["sub"]) is None:
            abort(401, message="Token is invalid or expired")
        return {"message": "Token is valid"}


@blp.route("/refresh")
class Refresh(MethodView):
    @blp.login_required(refresh=True)
    @blp.response(200, TokenSchema)
    def post(self):
        """Exchange a refresh token (as the bearer token) for new access and refresh tokens

        The web page sends none: with `X-PolyGenix-Refresh-Cookie: 1` from a page of this server,
        the token is read from its HttpOnly cookie and the new one set there (see docs/api.md).

        Refresh tokens rotate: each works once. Within REFRESH_REUSE_GRACE_SECONDS (10) of its
        first use, a spent one gets another new pair (two tabs, a retry); presented again after
        that, it revokes every token descended from the same login. The new access token is
        not fresh: it cannot change the password without `current_password`.
        """
        payload = get_jwt()
        spend(payload)
        return cookie.deliver(issue_tokens(current_user, family=payload.get("fam")))


@blp.route("/logout")
class Logout(MethodView):
    @blp.login_required
    @blp.arguments(LogoutSchema(), required=False)
    @blp.response(200, NoticeSchema)
    def post(self, data):
        """End the login the access token belongs to: every token of it, refresh tokens included

        A refresh token given in the body ends its login too.
        """
        refresh = None
        if data.get("refresh_token"):
            refresh = valid_payload(data["refresh_token"], "refresh")
            if refresh is None or refresh["sub"] != get_jwt()["sub"]:
                reason = "Not a valid refresh token of yours."
                abort(422, message=reason, errors={"json": {"refresh_token": [reason]}})
        revoke_family(get_jwt())
        if refresh is not None:
            revoke_family(refresh)
        stored = cookie.stored()
        from_cookie = valid_payload(stored, "refresh") if stored else None
        if from_cookie is not None and from_cookie["sub"] == get_jwt()["sub"]:
            revoke_family(from_cookie)
        cookie.clear()
        return {"message": "Logged out"}


@blp.route("/me")
class Me(MethodView):
    @blp.login_required
    @blp.response(200, ShowUserSchema)
    def get(self):
        """The caller's own record"""
        return current_user
