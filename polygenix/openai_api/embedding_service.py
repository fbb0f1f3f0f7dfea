"""An embeddings call, governed as a chat turn is, with nothing stored but its usage.

The model is resolved (any `provider/model` is passed through; a bare provider name means its
default embedding model), the caller's model access and budgets are checked
(`governance.policy.admit`), the provider is called with no database connection held, and what
it used is added to the caller's usage under `provider/model` (one call, its prompt tokens and
their cost), also when a batch failed after earlier ones were answered: those were billed. The
texts and their vectors are never stored.
"""

import time

from flask_smorest import abort
from sqlalchemy.exc import IntegrityError

from .. import clock
from ..config import provider_prefix
from ..extensions import db
from ..governance import ledger
from ..governance.policy import admit, governance
from ..logs import note, request_id
from ..metrics import record_cost, record_provider_call
from ..provider_registry import embedders, missing_variable
from ..providers import ProviderError
from ..providers.embedder import Embedded, Embedder, NoEmbeddings
from .embedding_schema import EmbeddingsRequest


def embed(user_id: int, asked: EmbeddingsRequest) -> tuple[Embedder, str, Embedded]:
    """The embedder, the model id asked of it, and the embeddings. UnknownModelError for a
    name that names no provider; a 400 for a provider without embeddings (or one that takes no
    token ids, when given them), the refusals of `admit`, ProviderError when the provider is
    not configured or fails."""
    try:
        embedder, model = embedders().resolve(asked.model)
    except NoEmbeddings as e:
        abort(400, message=str(e), errors={"json": {"model": [str(e)]}})
    if asked.inputs.tokens and not embedder.wire.TAKES_TOKENS:
        said = f"{embedder.name} takes text only: send strings, not token ids."
        abort(400, message=said, errors={"json": {"input": [said]}})
    admit(user_id, embedder.name, model)
    db.session.commit()  # the provider may take a while: no connection is held meanwhile
    _ready(embedder, model)
    started = time.monotonic()
    try:
        embedded = embedder.embed(
            asked.inputs.items,
            model,
            dimensions=asked.dimensions,
            encoding=asked.encoding,
            request_id=request_id(),
        )
    except ProviderError as e:
        used = e.usage or {}
        _account(embedder, model, str(e.status), started, used.get("prompt_tokens"))
        if used.get("prompt_tokens"):
            _charge(user_id, embedder, model, used.get("model") or model, used["prompt_tokens"])
        raise
    _account(embedder, model, "ok", started, embedded.prompt_tokens)
    _charge(user_id, embedder, model, embedded.model, embedded.prompt_tokens)
    return embedder, model, embedded


def _ready(embedder: Embedder, model: str | None) -> None:
    name = embedder.name
    if model is None:
        variable = f"{provider_prefix(name)}_EMBEDDING_MODEL"
        raise ProviderError(
            f"Model provider {name!r} has no default embedding model: set {variable}, "
            f"or name one ({name}/<model>)",
            status=503,
        )
    missing = missing_variable(embedder.provider, model)
    if missing:
        raise ProviderError(f"Model provider {name!r} is not configured: set {missing}", status=503)


def _account(embedder: Embedder, model: str, outcome: str, started: float, tokens) -> None:
    """The provider call in the metrics and in the request's log line."""
    seconds = time.monotonic() - started
    record_provider_call(embedder.provider, model, outcome, seconds, tokens, None)
    note(
        provider=embedder.name,
        model=model,
        outcome=outcome,
        prompt_tokens=tokens,
        provider_latency_ms=round(seconds * 1000, 1),
    )


def _charge(user_id: int, embedder: Embedder, asked: str, answered: str, tokens: int) -> None:
    """`tokens` added to the caller's usage and cost, committed (unless the account is gone)."""
    now = clock.now()
    name = embedder.name
    cost = governance().prices.cost(name, asked, answered, tokens, 0, None, now)
    record_cost(embedder.provider, asked, cost)
    entry = ledger.Entry(user_id, now.date(), f"{name}/{answered}", tokens, 0, cost)
    try:
        entry.add()
        db.session.commit()
    except IntegrityError:  # the account was deleted meanwhile
        db.session.rollback()


def with_embedding_models(entries: list[dict]) -> list[dict]:
    """The available models of the catalogue (catalog.catalogue()), and the default embedding
    model of each of their providers that has one."""
    providers = {e["provider"] for e in entries}
    known = {e["id"] for e in entries}
    added = [
        {"id": f"{e.name}/{e.default_model}", "provider": e.name, "model": e.default_model}
        for e in embedders()
        if e.name in providers and e.default_model is not None
    ]
    return entries + [entry for entry in added if entry["id"] not in known]
