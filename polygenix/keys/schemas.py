import marshmallow as ma
from marshmallow import fields, validate

from ..api import Text


class KeyCreateSchema(ma.Schema):
    name = Text(required=True, strip=True, max_length=100)
    expires_in_days = fields.Integer(
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=3650),
        metadata={"description": "Days until the key stops working; null or absent: never"},
    )


class KeySchema(ma.Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(dump_only=True)
    prefix = fields.String(dump_only=True, metadata={"description": "The key's first characters"})
    created_at = fields.DateTime(dump_only=True)
    last_used_at = fields.DateTime(dump_only=True, allow_none=True)
    expires_at = fields.DateTime(dump_only=True, allow_none=True)


class NewKeySchema(ma.Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(dump_only=True)
    key = fields.String(
        dump_only=True, metadata={"description": "The key itself: shown this once, never again"}
    )
    prefix = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    expires_at = fields.DateTime(dump_only=True, allow_none=True)


class RevokedSchema(ma.Schema):
    message = fields.String(dump_only=True)
    revoked = fields.Integer(
        dump_only=True, metadata={"description": "How many keys were revoked (expired ones too)"}
    )
