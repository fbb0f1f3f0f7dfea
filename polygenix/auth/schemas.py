import marshmallow as ma
from marshmallow import fields, validate

from ..api import NO_NUL, no_nul


class LoginFormSchema(ma.Schema):
    """The OAuth2 password grant form (RFC 6749 §4.3); `username` is the email."""

    class Meta:
        # RFC 6749 §3.1: unrecognised request parameters are ignored (the original web client
        # sends `name`).
        unknown = ma.EXCLUDE

    grant_type = fields.String(
        validate=validate.OneOf(["password", ""], error="grant_type must be 'password'."),
    )
    username = fields.String(
        required=True,
        validate=no_nul,
        metadata={"description": "The account's email", "pattern": NO_NUL},
    )
    password = fields.String(
        required=True,
        load_only=True,
        validate=[no_nul, validate.Length(max=4096)],
        metadata={"pattern": NO_NUL},
    )
    scope = fields.String(metadata={"description": "Accepted and ignored"})
    client_id = fields.String(metadata={"description": "Accepted and ignored"})
    client_secret = fields.String(load_only=True, metadata={"description": "Accepted and ignored"})


class TokenSchema(ma.Schema):
    access_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "bearer"})
    refresh_token = fields.String(
        metadata={"description": "Send as the bearer token to /api/auth/refresh"}
    )
    expires_in = fields.Integer(metadata={"description": "Seconds until access_token expires"})


class LogoutSchema(ma.Schema):
    refresh_token = fields.String(
        allow_none=True, metadata={"description": "Also revoke this refresh token"}
    )
