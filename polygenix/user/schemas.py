import gzip
from functools import cache
from pathlib import Path

import marshmallow as ma
from flask import current_app
from marshmallow import fields, validate

from ..api import NO_NUL, Text, no_nul
from ..models import normalize_email

PASSWORD_MAX_LENGTH = 128
COMMON_PASSWORDS = Path(__file__).resolve().parent.parent / "data" / "common-passwords.txt.gz"


class _Email(fields.Email):
    """An email as people paste it: surrounding white space dropped, then lower-cased."""

    def _deserialize(self, value, attr, data, **kwargs):
        return normalize_email(super()._deserialize(value, attr, data, **kwargs))


@cache
def common_passwords() -> frozenset[str]:
    """19,640 common passwords (Royce Williams' list, as Django ships it), lower-cased."""
    with gzip.open(COMMON_PASSWORDS, "rt", encoding="utf-8") as f:
        return frozenset(line.strip().lower() for line in f if line.strip())


PASSWORD_DOC = {
    "minLength": 8,
    "maxLength": PASSWORD_MAX_LENGTH,
    "pattern": NO_NUL,
    "description": "8 (PASSWORD_MIN_LENGTH) to 128 characters, not a commonly used password",
}


def validate_password(value: str) -> None:
    """NIST 800-63B / ASVS 6.2: a length range and no common passwords; no composition rules."""
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(value) < minimum:
        raise ma.ValidationError(f"Password must be at least {minimum} characters.")
    if len(value) > PASSWORD_MAX_LENGTH:
        raise ma.ValidationError(f"Password must be at most {PASSWORD_MAX_LENGTH} characters.")
    no_nul(value)  # a login form could never send it back
    if value.strip().lower() in common_passwords():
        raise ma.ValidationError("This password is too common; choose one that is harder to guess.")


class UserSchema(ma.Schema):
    """A new account (register, create)."""

    name = Text(required=True, strip=True, max_length=100)
    email = _Email(required=True, validate=validate.Length(max=254))
    password = fields.String(
        required=True, load_only=True, validate=validate_password, metadata=PASSWORD_DOC
    )


class UserUpdateSchema(ma.Schema):
    """Fields to change; absent or null leaves a field as it is."""

    name = Text(allow_none=True, strip=True, max_length=100)
    password = fields.String(
        allow_none=True, load_only=True, validate=validate_password, metadata=PASSWORD_DOC
    )
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
