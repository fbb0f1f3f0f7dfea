"""Embeddings from a provider: the inputs cut into batches the provider takes, each sent through
the provider's own transport, retry policy and error mapping (client.py), so that an embeddings
call fails exactly as a chat call does, and the vectors put back in input order.

EMBEDDINGS names the providers that have an embeddings API, their format and their default
embedding model; the app may set another default for each (`build_embedders`).
"""

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import orjson

from . import Registry
from .base import MalformedResponse, ProviderError
from .client import HTTPProvider
from .embedding_wire import (
    Batch,
    EmbeddingFormat,
    GeminiEmbeddings,
    Item,
    MistralEmbeddings,
    OllamaEmbeddings,
    OpenAIEmbeddings,
    Vector,
    batches,
)

log = logging.getLogger(__name__)
# What a body that is not the answer may raise while a format reads it.
_UNUSABLE = (MalformedResponse, KeyError, IndexError, TypeError, AttributeError, ValueError)
CHARS_PER_TOKEN = 4  # the estimate of tokens a provider did not count


@dataclass(frozen=True)
class EmbeddingDefinition:
    wire: EmbeddingFormat
    default_model: str | None


EMBEDDINGS: dict[str, EmbeddingDefinition] = {
    "openai": EmbeddingDefinition(OpenAIEmbeddings(asks_base64=True), "text-embedding-3-small"),
    "mistral": EmbeddingDefinition(MistralEmbeddings(), "mistral-embed"),
    "gemini": EmbeddingDefinition(GeminiEmbeddings(), "gemini-embedding-001"),
    "ollama": EmbeddingDefinition(OllamaEmbeddings(), "embeddinggemma"),
    # Servers differ: they are asked for numbers, which every one sends.
    "openai-compatible": EmbeddingDefinition(OpenAIEmbeddings(), None),
}


class NoEmbeddings(LookupError):
    """The model's provider has no embeddings API."""


@dataclass(frozen=True)
class Embedded:
    vectors: list[Vector]  # in input order
    prompt_tokens: int
    estimated: bool  # some of prompt_tokens are an estimate: the provider did not count them
    model: str  # the model the provider says answered, else the one asked for
    batches: int  # requests sent


def estimate(items: list[Item]) -> int:
    """Tokens the provider did not count: token ids exactly, text at 4 characters a token."""
    return sum(len(i) if isinstance(i, list) else -(-len(i) // CHARS_PER_TOKEN) for i in items)


class Embedder:
    def __init__(self, provider: HTTPProvider, wire: EmbeddingFormat, default_model: str | None):
        self.provider = provider
        self.wire = wire
        self.default_model = default_model

    @property
    def name(self) -> str:
        return self.provider.name

    def embed(
        self,
        items: list[Item],
        model: str,
        *,
        dimensions: int | None = None,
        encoding: str = "float",
        request_id: str | None = None,
    ) -> Embedded:
        """The embeddings of `items`, one batch after another. A failure after the provider
        answered some batches carries what they used in `ProviderError.usage`: they are billed.
        PROVIDER_TIMEOUT bounds each request, and no request starts once the batches together
        have run past it."""
        deadline = time.monotonic() + self.provider.settings.timeout
        vectors: list[Vector] = []
        used = _Used(model)
        runs = batches(items, self.wire)
        for start, end in runs:
            part = items[start:end]
            try:
                if vectors and time.monotonic() > deadline:
                    raise self.provider.late()
                batch = self._send(part, model, dimensions, encoding, request_id)
                used.add(batch, part)
                if len(batch.vectors) != len(part):
                    got = len(batch.vectors)
                    raise self.provider.unusable(f": {got} embeddings for {len(part)} inputs")
            except ProviderError as e:
                e.usage = used.as_usage()
                raise
            vectors += batch.vectors
        if len({len(v) for v in vectors}) > 1:
            error = self.provider.unusable(": embeddings of different sizes")
            error.usage = used.as_usage()
            raise error
        return Embedded(vectors, used.tokens, used.estimated, used.model, len(runs))

    def _send(self, part, model, dimensions, encoding, request_id) -> Batch:
        provider = self.provider
        payload = self.wire.build_payload(part, model, dimensions, encoding)
        # The provider's own sending and failures: the same transport, retries and statuses
        # as its chat calls.
        body = provider._send(self.wire.path(model), payload, model, request_id)
        try:
            # Millions of numbers: orjson reads them two to three times as fast as json does.
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        try:
            if not isinstance(data, dict):
                raise MalformedResponse("not a JSON object")
            failed = self.wire.body_error(data)
            if failed is not None:
                raise provider._failure(failed[1] or 502, failed[0], model, None)
            return self.wire.parse_response(data)
        except _UNUSABLE as e:
            log.warning("%s returned unusable embeddings: %s", self.name, type(e).__name__)
            detail = f": {e}" if isinstance(e, MalformedResponse) else ""
            raise provider.unusable(detail) from None


class _Used:
    """What the batches the provider answered used so far."""

    def __init__(self, model: str):
        self.tokens = 0
        self.estimated = False
        self.model = model  # the one asked for, until the provider names the one that answered
        self.named = False

    def add(self, batch: Batch, part: list[Item]) -> None:
        if batch.prompt_tokens is None:
            self.tokens += estimate(part)
            self.estimated = True
        else:
            self.tokens += batch.prompt_tokens
        if batch.model and not self.named:
            self.model, self.named = batch.model, True

    def as_usage(self) -> dict | None:
        """As ProviderError.usage has it; None when nothing was used."""
        return {"prompt_tokens": self.tokens, "model": self.model} if self.tokens else None


class Embedders:
    """The app's providers with an embeddings API, and what a model name means for them."""

    def __init__(self, providers: Registry, embedders: Mapping[str, Embedder]):
        self.providers = providers  # every provider
        self.embedders = dict(embedders)

    def __iter__(self) -> Iterator[Embedder]:
        return iter(self.embedders.values())

    def resolve(self, name: str) -> tuple[Embedder, str | None]:
        """The embedder a model name means, and its model id: the one named, else the
        provider's default embedding model (None when it has none). UnknownModelError for a
        name that names no provider, NoEmbeddings for a provider without embeddings."""
        provider, _ = self.providers.resolve(name)
        embedder = self.embedders.get(provider.name)
        if embedder is None:
            raise NoEmbeddings(
                f"{provider.name} has no embeddings API; models of "
                f"{', '.join(self.embedders)} make embeddings."
            )
        # A bare provider name means its default embedding model, not its chat model.
        target = self.providers.aliases.get(" ".join(name.split()).lower()) or name.strip()
        return embedder, target.partition("/")[2].strip() or embedder.default_model


def build_embedders(providers: Registry, models: Mapping[str, str | None]) -> Embedders:
    """An embedder for each provider of EMBEDDINGS in `providers`, its default model
    `models[name]` where set."""
    embedders = {}
    for name, definition in EMBEDDINGS.items():
        provider = providers.get(name)
        if isinstance(provider, HTTPProvider):
            default = models.get(name) or definition.default_model
            embedders[name] = Embedder(provider, definition.wire, default)
    return Embedders(providers, embedders)
