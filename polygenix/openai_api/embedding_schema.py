"""An Embeddings request as OpenAI defines it
(https://platform.openai.com/docs/api-reference/embeddings/create), validated by a marshmallow
schema whose errors are answered in OpenAI's shape: a 400 whose `param` names the field.

`input` is what OpenAI takes: a string, an array of 1 to 2,048 strings, an array of token ids, or
an array of 1 to 2,048 arrays of token ids. No string may be empty, hold a NUL or be longer than
MAX_MESSAGE_CHARS; no array of token ids may be empty or longer than that either. `user` is
accepted and not passed on; a null optional field counts as absent; any other field is a 400.
"""

from dataclasses import dataclass

import marshmallow as ma
from flask import current_app
from flask_smorest import abort
from marshmallow import fields, validate
from marshmallow.exceptions import SCHEMA

from ..api import Text
from ..providers.embedding_wire import MAX_INPUTS, Item

ENCODINGS = ("float", "base64")
MAX_DIMENSIONS = 65_536
MAX_TOKEN_ID = 2**31 - 1
SHAPE = (
    f"Must be a string, an array of 1 to {MAX_INPUTS} strings, an array of token ids, or an "
    f"array of 1 to {MAX_INPUTS} arrays of token ids."
)


@dataclass(frozen=True)
class Inputs:
    items: list[Item]
    tokens: bool  # the items are token ids


def _text(value: str, longest: int) -> str:
    if not value:
        raise ma.ValidationError("Must not hold an empty string.")
    if len(value) > longest:
        raise ma.ValidationError(f"Each string must be at most {longest} characters.")
    if "\x00" in value:
        raise ma.ValidationError("Must not contain NUL characters.")
    return value


def _token_ids(value: list, longest: int) -> list[int]:
    if not value:
        raise ma.ValidationError("Must not hold an empty array of token ids.")
    if len(value) > longest:
        raise ma.ValidationError(f"Each array of token ids must be at most {longest} long.")
    for token in value:
        if type(token) is not int or not 0 <= token <= MAX_TOKEN_ID:
            raise ma.ValidationError(f"Token ids are whole numbers from 0 to {MAX_TOKEN_ID}.")
    return value


class EmbeddingInput(fields.Field):
    """`input`, as the list of texts (or of token-id arrays) to embed, in order."""

    def _deserialize(self, value, attr, data, **kwargs) -> Inputs:
        longest = current_app.config["MAX_MESSAGE_CHARS"]
        if isinstance(value, str):
            return Inputs([_text(value, longest)], tokens=False)
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_INPUTS:
            raise ma.ValidationError(SHAPE)
        kinds = {type(item) for item in value}
        if kinds == {str}:
            return Inputs([_text(item, longest) for item in value], tokens=False)
        if kinds == {int}:
            return Inputs([_token_ids(value, longest)], tokens=True)
        if kinds == {list}:
            return Inputs([_token_ids(item, longest) for item in value], tokens=True)
        raise ma.ValidationError(SHAPE)


class EmbeddingsRequestSchema(ma.Schema):
    error_messages = {"type": "Must be a JSON object."}

    model = Text(required=True, max_length=200)
    input = EmbeddingInput(required=True)
    encoding_format = fields.String(
        load_default="float", allow_none=True, validate=validate.OneOf(ENCODINGS)
    )
    dimensions = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(min=1, max=MAX_DIMENSIONS)
    )
    user = fields.String(allow_none=True, validate=validate.Length(max=512))


@dataclass(frozen=True)
class EmbeddingsRequest:
    model: str
    inputs: Inputs
    encoding: str  # "float" or "base64"
    dimensions: int | None


def load(body) -> EmbeddingsRequest:
    """The request in `body` (parsed JSON); a 400 naming the first field in error if it is not
    one."""
    try:
        data = EmbeddingsRequestSchema().load(body)
    except ma.ValidationError as e:
        errors = e.normalized_messages()
        # A body that is not an object has no field to name: it is the body's own error.
        errors = {("body" if k == SCHEMA else k): v for k, v in errors.items()}
        field, said = next(iter(errors.items()))
        message = f"{field}: {' '.join(said) if isinstance(said, list) else said}"
        abort(400, message=message, errors={"json": errors})
    return EmbeddingsRequest(
        model=data["model"],
        inputs=data["input"],
        encoding=data.get("encoding_format") or "float",
        dimensions=data.get("dimensions"),
    )
