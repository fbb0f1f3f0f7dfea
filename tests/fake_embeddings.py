"""The fake provider's embeddings APIs, each as its reference defines it, limits included.

- OpenAI and OpenAI-compatible servers, `POST .../embeddings`: at most 2,048 inputs and 300,000
  tokens a request; `dimensions`; `encoding_format: "base64"` gives base64 of little-endian
  float32s. A request with Mistral's key is Mistral's: at most 512 inputs and 16,384 tokens,
  `output_dimension`, its own error body.
- Gemini, `POST .../models/{model}:batchEmbedContents`: at most 100 requests, each naming the
  same model as the path; `outputDimensionality`; no token counts.
- Ollama, `POST /api/embed`: `dimensions`; `prompt_eval_count`.

Fields a provider does not know are refused as it refuses them. A token is counted as 4 bytes
of UTF-8 (at least one a text). Each text's vector is `vector(text, dimensions)`: its own,
the same every time, whichever batch carries it.
"""

import base64
import json
import sys
import zlib
from array import array
from functools import lru_cache

DIMENSIONS = 8  # the length of a vector when none is asked for
# Multiples of 1/1024 are exact as float32 and short as JSON.
_BASE = [((n * 7919) % 2048 - 1024) / 1024 for n in range(8192)]
OPENAI_FIELDS = {"model", "input", "dimensions", "encoding_format", "user"}
MISTRAL_FIELDS = {"model", "input", "output_dimension", "output_dtype", "encoding_format"}
GEMINI_FIELDS = {"model", "content", "taskType", "title", "outputDimensionality"}


def serves(path: str) -> bool:
    return path.endswith(("/embeddings", ":batchEmbedContents", "/api/embed"))


def vector(item, dimensions: int = DIMENSIONS) -> list[float]:
    """The fake embedding of a text (or of a list of token ids)."""
    start = zlib.crc32(str(item).encode("utf-8")) % 4096
    return (_BASE[start:] + _BASE[:start])[:dimensions]


def tokens(item) -> int:
    if isinstance(item, list):
        return len(item)
    return max(1, -(-len(item.encode("utf-8")) // 4))


@lru_cache(maxsize=8192)
def _encoded(text: str, dimensions: int, encoding: str) -> str:
    values = vector(text, dimensions)
    if encoding != "base64":
        return json.dumps(values)
    packed = array("f", values)
    if sys.byteorder == "big":
        packed.byteswap()
    return json.dumps(base64.b64encode(packed.tobytes()).decode("ascii"))


def _json(status: int, body) -> tuple[int, bytes]:
    return status, json.dumps(body).encode()


def answer(path: str, headers, body, dimensions: int) -> tuple[int, bytes]:
    """The status and body the provider of `path` answers `body` with."""
    if path.endswith(":batchEmbedContents"):
        return _gemini(path, body, dimensions)
    if path.endswith("/api/embed"):
        return _ollama(body, dimensions)
    if "mistral" in headers.get("Authorization", ""):
        return _mistral(body, dimensions)
    return _openai(body, dimensions)


def _inputs(body) -> list:
    given = body.get("input")
    return [given] if isinstance(given, str) or (given and isinstance(given[0], int)) else given


def _openai_error(message: str) -> tuple[int, bytes]:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return _json(400, {"error": error})


def _data(items: list, size: int, encoding: str) -> str:
    return ",".join(
        f'{{"object":"embedding","index":{n},"embedding":{_encoded(str(t), size, encoding)}}}'
        for n, t in enumerate(items)
    )


def _openai(body, dimensions: int) -> tuple[int, bytes]:
    unknown = set(body) - OPENAI_FIELDS
    if unknown:
        return _openai_error(f"Unrecognized request argument supplied: {sorted(unknown)[0]}")
    items = _inputs(body)
    if not items or len(items) > 2048:
        return _openai_error("'$.input' is invalid. Please check the API reference.")
    used = sum(tokens(i) for i in items)
    if used > 300_000:
        return _openai_error(f"Requested {used} tokens, max 300000 tokens per request")
    size = body.get("dimensions") or dimensions
    data = _data(items, size, body.get("encoding_format") or "float")
    usage = f'{{"prompt_tokens":{used},"total_tokens":{used}}}'
    model = json.dumps(body["model"])
    return 200, f'{{"object":"list","data":[{data}],"model":{model},"usage":{usage}}}'.encode()


def _mistral_error(message: str, code: str) -> tuple[int, bytes]:
    body = {"object": "error", "message": message, "type": "invalid_request_error"}
    return _json(400, body | {"param": None, "code": code})


def _mistral(body, dimensions: int) -> tuple[int, bytes]:
    unknown = set(body) - MISTRAL_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        detail = {"type": "extra_forbidden", "loc": ["body", name]}
        detail["msg"] = "Extra inputs are not permitted"
        body = {"object": "error", "message": {"detail": [detail]}, "type": "invalid_request_error"}
        return _json(422, body)
    items = _inputs(body)
    if len(items) > 512:
        return _mistral_error("Too many inputs in request, split into more batches.", "3210")
    used = sum(tokens(i) for i in items)
    if used > 16_384:
        return _mistral_error(f"Too many tokens in batch. Max is 16384 got {used}", "3211")
    size = body.get("output_dimension") or dimensions
    data = _data(items, size, body.get("encoding_format") or "float")
    usage = f'{{"prompt_tokens":{used},"total_tokens":{used},"completion_tokens":0}}'
    model = json.dumps(body["model"])
    text = f'{{"id":"emb-1","object":"list","data":[{data}],"model":{model},"usage":{usage}}}'
    return 200, text.encode()


def _gemini_error(message: str) -> tuple[int, bytes]:
    return _json(400, {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}})


def _gemini(path: str, body, dimensions: int) -> tuple[int, bytes]:
    model = "models/" + path.rsplit("/", 1)[-1].removesuffix(":batchEmbedContents")
    requests = body.get("requests") or []
    if set(body) != {"requests"}:
        return _gemini_error("Invalid JSON payload received. Unknown name in the request.")
    if len(requests) > 100:
        return _gemini_error(
            "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n"
        )
    values = []
    for request in requests:
        if set(request) - GEMINI_FIELDS or request.get("model") != model:
            return _gemini_error("* BatchEmbedContentsRequest.requests: a request is invalid\n")
        [part] = request["content"]["parts"]
        size = request.get("outputDimensionality") or dimensions
        values.append(f'{{"values":{_encoded(part["text"], size, "float")}}}')
    return 200, f'{{"embeddings":[{",".join(values)}]}}'.encode()


def _ollama(body, dimensions: int) -> tuple[int, bytes]:
    items = _inputs(body)
    if not items:
        return _json(400, {"error": "invalid input type"})
    size = body.get("dimensions") or dimensions
    vectors = ",".join(_encoded(str(t), size, "float") for t in items)
    used = sum(tokens(i) for i in items)
    model = json.dumps(body["model"])
    text = (
        f'{{"model":{model},"embeddings":[{vectors}],"total_duration":14143917,'
        f'"load_duration":1019500,"prompt_eval_count":{used}}}'
    )
    return 200, text.encode()
