"""OpenAI's Embeddings API, `POST /v1/embeddings`
(https://platform.openai.com/docs/api-reference/embeddings), on every provider that has one:
the request validated (embedding_schema.py), the call governed and counted
(embedding_service.py), and the answer in OpenAI's shape, vectors in input order, as numbers or
as the base64 of little-endian float32s.

The body is written a piece at a time: 2,048 vectors of 1,536 numbers are some 30 MB of JSON,
which is never held whole.
"""

from collections.abc import Iterator

import orjson
from flask import Blueprint, Response, request

from ..auth.access import current_user, required
from ..errors import error_response, provider_error_response
from ..limits import per_user
from ..providers import ProviderError, UnknownModelError
from ..providers.embedding_wire import Vector
from . import embedding_service
from .embedding_schema import load

bp = Blueprint("embeddings", __name__)
PIECE = 65536  # bytes of the body written at once


def _model_not_found(message: str) -> Response:
    return error_response(404, message, param="model", error_code="model_not_found")


@bp.post("/embeddings")
@required(keys=True)
@per_user
def create():
    asked = load(request.get_json())
    try:
        embedder, model, embedded = embedding_service.embed(current_user.id, asked)
    except UnknownModelError as e:
        return _model_not_found(str(e))
    except ProviderError as e:
        if e.status == 422:  # the provider does not know the model
            return _model_not_found(e.message)
        return provider_error_response(e)
    name = f"{embedder.name}/{model}"
    body = _body(embedded.vectors, asked.encoding, name, embedded.prompt_tokens)
    return Response(body, mimetype="application/json")


def _body(vectors: list[Vector], encoding: str, model: str, tokens: int) -> Iterator[bytes]:
    """{"object": "list", "data": [{"object": "embedding", "index", "embedding"}...], "model",
    "usage": {"prompt_tokens", "total_tokens"}}, in pieces of about PIECE bytes. orjson writes
    the numbers: several times as fast as json, for millions of them."""
    pieces, size = [b'{"object":"list","data":['], 0
    for index, vector in enumerate(vectors):
        value = vector.base64() if encoding == "base64" else vector.floats()
        item = {"object": "embedding", "index": index, "embedding": value}
        pieces.append((b"," if index else b"") + orjson.dumps(item))
        size += len(pieces[-1])
        if size >= PIECE:
            yield b"".join(pieces)
            pieces, size = [], 0
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    pieces.append(b'],"model":' + orjson.dumps(model) + b',"usage":' + orjson.dumps(usage) + b"}")
    yield b"".join(pieces)
