"""Embedding APIs' HTTP formats: pure builders and parsers, one per format, beside the chat ones.

- OpenAI (https://platform.openai.com/docs/api-reference/embeddings/create), spoken by OpenAI
  and OpenAI-compatible servers: POST /embeddings {model, input: [strings or token-id arrays],
  dimensions, encoding_format}; {data: [{index, embedding}], model, usage.prompt_tokens}. At most
  2,048 inputs and 300,000 tokens a request. `embedding` is a list of numbers, or with
  `encoding_format: "base64"` the base64 of little-endian float32s.
- Mistral (https://docs.mistral.ai/api/endpoint/embeddings): the same shape, with
  `output_dimension` for `dimensions`; at most 512 inputs and 16,384 tokens a request.
- Gemini (https://ai.google.dev/api/embeddings#method:-models.batchembedcontents):
  POST /models/{model}:batchEmbedContents {requests: [{model: "models/{model}", content:
  {parts: [{text}]}, outputDimensionality}]}; {embeddings: [{values}]} in request order, with no
  token counts. At most 100 requests a batch.
- Ollama (https://github.com/ollama/ollama/blob/main/docs/api.md#generate-embeddings):
  POST /api/embed {model, input, dimensions}; {model, embeddings: [[...]], prompt_eval_count}.

A format never makes a request (see embedder.py). Token limits are kept without a tokenizer: a
string's UTF-8 bytes, plus a few for the tokens a model adds, bound its tokens from above (every
tokenizer in use makes at most one token of each byte), so a batch within a limit so measured is
within the provider's.
"""

import binascii
import sys
from array import array
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .base import MalformedResponse

Item = str | list[int]  # a text, or a text as token ids
ADDED_TOKENS = 4  # tokens a model may add to each input (begin, end, a leading space)
MAX_INPUTS = 2048  # what OpenAI takes in one request, and so what PolyGenix takes
_BIG_ENDIAN = sys.byteorder == "big"


class Vector:
    """One embedding as the provider sent it: numbers, or base64 of little-endian float32s."""

    __slots__ = ("_numbers", "_packed", "_text")

    def __init__(self, value: Any):
        # Numbers, or the base64 as it came (never empty) and its bytes.
        self._numbers: array | None = None
        self._packed = b""
        self._text = ""
        if isinstance(value, str):
            try:
                self._packed = binascii.a2b_base64(value, strict_mode=True)
            except binascii.Error:
                raise MalformedResponse("an embedding is not valid base64") from None
            if not self._packed or len(self._packed) % 4:
                raise MalformedResponse("an embedding is not a whole number of float32s")
            self._text = value
        elif isinstance(value, list) and value:
            # Bodies are read by orjson, which refuses NaN and infinities: numbers are finite.
            try:
                self._numbers = array("d", value)
            except TypeError:
                raise MalformedResponse("an embedding holds something other than numbers") from None
        else:
            raise MalformedResponse("an embedding is neither a list of numbers nor base64")

    def __len__(self) -> int:
        return len(self._numbers) if self._numbers is not None else len(self._packed) // 4

    def floats(self) -> list[float]:
        if self._numbers is not None:
            return self._numbers.tolist()
        return self._float32s().tolist()

    def base64(self) -> str:
        """The base64 of little-endian float32s, as OpenAI sends it."""
        if self._numbers is None:
            return self._text
        packed = array("f", self._numbers)
        if _BIG_ENDIAN:
            packed.byteswap()
        return binascii.b2a_base64(packed.tobytes(), newline=False).decode("ascii")

    def _float32s(self) -> array:
        numbers = array("f")
        numbers.frombytes(self._packed)
        if _BIG_ENDIAN:
            numbers.byteswap()
        return numbers


@dataclass(frozen=True)
class Batch:
    """What one request to the provider gave back, in input order."""

    vectors: list[Vector]
    prompt_tokens: int | None  # None: the provider did not say
    model: str | None  # the model the provider says answered


def tokens_at_most(item: Item) -> int:
    """An upper bound of the tokens `item` counts for (its exact count if it is token ids)."""
    return len(item) if isinstance(item, list) else len(item.encode("utf-8")) + ADDED_TOKENS


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class EmbeddingFormat:
    MAX_INPUTS = MAX_INPUTS  # inputs in one request
    MAX_TOKENS: int | None = None  # tokens in one request (None: no limit documented)
    TAKES_TOKENS = False  # whether inputs may be token ids

    def path(self, model: str) -> str:
        raise NotImplementedError

    def build_payload(
        self, items: list[Item], model: str, dimensions: int | None, encoding: str
    ) -> dict:
        """The request for `items`; `encoding` is what the client asked for ("float" or
        "base64"), which a format may ask of the provider too."""
        raise NotImplementedError

    def parse_response(self, data: dict) -> Batch:
        raise NotImplementedError

    def body_error(self, data: dict) -> tuple[str, int | None] | None:
        """An error reported in a 2xx body (its message, and the HTTP status it stands for), or
        None: an `error` with no embeddings beside it."""
        error = data.get("error")
        if not error or data.get("data") or data.get("embeddings"):
            return None
        if isinstance(error, dict):
            code = error.get("code")
            status = code if isinstance(code, int) and 400 <= code < 600 else None
            return str(error.get("message") or "error"), status
        return str(error), None


class OpenAIEmbeddings(EmbeddingFormat):
    """`asks_base64`: ask the provider for base64 when the client wants it, so that each vector
    passes through as sent (OpenAI); other servers are asked for their default, numbers."""

    MAX_TOKENS = 300_000
    TAKES_TOKENS = True
    dimensions_field = "dimensions"

    def __init__(self, *, asks_base64: bool = False):
        self.asks_base64 = asks_base64

    def path(self, model: str) -> str:
        return "/embeddings"

    def build_payload(
        self, items: list[Item], model: str, dimensions: int | None, encoding: str
    ) -> dict:
        payload: dict[str, Any] = {"model": model, "input": items}
        if dimensions is not None:
            payload[self.dimensions_field] = dimensions
        if self.asks_base64 and encoding == "base64":
            payload["encoding_format"] = "base64"
        return payload

    def parse_response(self, data: dict) -> Batch:
        entries = data["data"]
        if not isinstance(entries, list):
            raise MalformedResponse("data is not a list")
        vectors: list[Vector | None] = [None] * len(entries)
        for position, entry in enumerate(entries):
            index = entry.get("index", position)
            known = isinstance(index, int) and 0 <= index < len(entries)
            if not known or vectors[index] is not None:
                raise MalformedResponse("the embeddings' indexes are not 0 to n-1")
            vectors[index] = Vector(entry["embedding"])
        usage = data.get("usage") or {}
        # Each of the n indexes came once: every place is filled.
        filled = [vector for vector in vectors if vector is not None]
        return Batch(filled, _count(usage.get("prompt_tokens")), _model(data.get("model")))


class MistralEmbeddings(OpenAIEmbeddings):
    MAX_INPUTS = 512
    MAX_TOKENS = 16_384
    TAKES_TOKENS = False
    dimensions_field = "output_dimension"


class GeminiEmbeddings(EmbeddingFormat):
    MAX_INPUTS = 100

    def path(self, model: str) -> str:
        model = model.removeprefix("models/")
        return f"/models/{quote(model, safe='-._~')}:batchEmbedContents"

    def build_payload(
        self, items: list[Item], model: str, dimensions: int | None, encoding: str
    ) -> dict:
        name = "models/" + model.removeprefix("models/")
        requests = []
        for text in items:
            request: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
            if dimensions is not None:
                request["outputDimensionality"] = dimensions
            requests.append(request)
        return {"requests": requests}

    def parse_response(self, data: dict) -> Batch:
        entries = data["embeddings"]
        if not isinstance(entries, list):
            raise MalformedResponse("embeddings is not a list")
        return Batch([Vector(entry["values"]) for entry in entries], None, None)


class OllamaEmbeddings(EmbeddingFormat):
    def path(self, model: str) -> str:
        return "/api/embed"

    def build_payload(
        self, items: list[Item], model: str, dimensions: int | None, encoding: str
    ) -> dict:
        payload: dict[str, Any] = {"model": model, "input": items}
        if dimensions is not None:
            payload["dimensions"] = dimensions
        return payload

    def parse_response(self, data: dict) -> Batch:
        entries = data["embeddings"]
        if not isinstance(entries, list):
            raise MalformedResponse("embeddings is not a list")
        vectors = [Vector(entry) for entry in entries]
        return Batch(vectors, _count(data.get("prompt_eval_count")), _model(data.get("model")))


def _model(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def batches(items: list[Item], wire: EmbeddingFormat) -> list[tuple[int, int]]:
    """`items` cut into runs (start, end) that each fit one request: at most MAX_INPUTS inputs
    and, where the provider limits them, MAX_TOKENS tokens (an input over that alone is sent
    alone: the provider decides)."""
    runs, start, tokens = [], 0, 0
    for end, item in enumerate(items):
        size = tokens_at_most(item)
        full = end - start >= wire.MAX_INPUTS
        over = wire.MAX_TOKENS is not None and tokens + size > wire.MAX_TOKENS
        if end > start and (full or over):
            runs.append((start, end))
            start, tokens = end, 0
        tokens += size
    if start < len(items):
        runs.append((start, len(items)))
    return runs
