import marshmallow as ma
from flask import current_app
from marshmallow import fields, validate

from ..api import Text
from ..models import normalize_email

PASSWORD_MAX_LENGTH = 128


class _Email(fields.Email):
    """An email as people paste it: surrounding white space dropped, then lower-cased."""

    def _deserialize(self, value, attr, data, **kwargs):
        return normalize_email(super()._deserialize(value, attr, data, **kwargs))


def validate_password(value: str) -> None:
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(value) < minimum:
        raise ma.ValidationError(f"Password must be at least {minimum} characters.")
    if len(value) > PASSWORD_MAX_LENGTH:
        raise ma.ValidationError(f"Password must be at most {PASSWORD_MAX_LENGTH} characters.")


class UserSchema(ma.Schema):
    """A new account (register, create)."""

    name = Text(required=True, strip=True, max_length=100)
    email = _Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, validate=validate_password)


class UserUpdateSchema(ma.Schema):
    """Fields to change; absent or null leaves a field as it is."""

    name = Text(allow_none=True, strip=True, max_length=100)
    password = fields.String(allow_none=True, load_only=True, validate=validate_password)
    current_password = fields.String(
        allow_none=True,
        load_only=True,
        metadata={"description": "Required when changing your own password."},
    )


class ShowUserSchema(ma.Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(dump_only=True)
    email = fields.Email(dump_only=True)
    is_admin = fields.Boolean(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
