"""Embeddings from a provider: the inputs cut into batches the provider takes, sent a few at a
time, each through the provider's own transport, retry policy and error mapping (client.py), so
that an embeddings call fails exactly as a chat call does, and the vectors put back in input
order.

EMBEDDINGS names the providers that have an embeddings API, their format and their default
embedding model; the app may set another default for each (`build_embedders`).
"""

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
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
# Requests one call has at a provider at once: 2,048 inputs are 21 Gemini batches.
CONCURRENT_BATCHES = 4


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
        """The embeddings of `items`, in batches sent CONCURRENT_BATCHES at a time.

        The first failure in input order is raised, carrying in `ProviderError.usage` what the
        batches the provider answered used: they are billed. Once a batch has failed, no other
        is sent. PROVIDER_TIMEOUT bounds each request, and no request starts once the call has
        run past it."""
        deadline = time.monotonic() + self.provider.settings.timeout
        runs = batches(items, self.wire)
        failed = threading.Event()

        def send(part: list[Item]) -> Batch | None:
            if failed.is_set():
                return None  # not sent: an earlier batch failed
            try:
                if time.monotonic() > deadline:
                    raise self.provider.late()
                return self._send(part, model, dimensions, encoding, request_id)
            except ProviderError:
                failed.set()
                raise

        parts = [items[start:end] for start, end in runs]
        if len(parts) == 1:
            outcomes = [_outcome(send, parts[0])]
        else:
            workers = min(CONCURRENT_BATCHES, len(parts))
            with ThreadPoolExecutor(workers, thread_name_prefix="embeddings") as pool:
                futures = [pool.submit(_outcome, send, part) for part in parts]
            outcomes = [future.result() for future in futures]
        return self._gathered(parts, outcomes, model)

    def _gathered(self, parts, outcomes, model: str) -> Embedded:
        """The batches' vectors in input order, and what they used; or the first failure."""
        used, error, vectors = _Used(model), None, []
        for part, outcome in zip(parts, outcomes, strict=True):
            if isinstance(outcome, ProviderError):
                error = error or outcome
                continue
            if outcome is None:
                continue
            used.add(outcome, part)
            if len(outcome.vectors) != len(part):
                got = len(outcome.vectors)
                error = error or self.provider.unusable(
                    f": {got} embeddings for {len(part)} inputs"
                )
            vectors += outcome.vectors
        if error is None and len({len(v) for v in vectors}) > 1:
            error = self.provider.unusable(": embeddings of different sizes")
        if error is not None:
            error.usage = used.as_usage()
            raise error
        return Embedded(vectors, used.tokens, used.estimated, used.model, len(parts))

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


def _outcome(send, part):
    """`send(part)`'s batch, or the ProviderError it raised."""
    try:
        return send(part)
    except ProviderError as e:
        return e


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
