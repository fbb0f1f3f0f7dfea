"""An embeddings call, governed as a chat turn is, with nothing stored but its usage.

The model is resolved (any `provider/model` is passed through; a bare provider name means its
default embedding model), the caller's model access and budgets are checked
(`governance.policy.admit`), the provider is called with no database connection held, and what
it used is added to the caller's usage under `provider/model` (one call, its prompt tokens and
their cost), also when a batch failed after earlier ones were answered: those were billed. The
texts and their vectors are never stored.
"""

import time
from datetime import timedelta

from flask import current_app
from flask_smorest import abort
from sqlalchemy.exc import IntegrityError

from .. import clock
from ..config import provider_prefix
from ..extensions import db
from ..governance import ledger, reservations
from ..governance.policy import Limits, admit, governance
from ..logs import note, request_id
from ..metrics import record_cost, record_provider_call
from ..provider_registry import embedders, missing_variable
from ..providers import ProviderError
from ..providers.embedder import CHARS_PER_TOKEN, Embedded, Embedder, NoEmbeddings
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
    limits = admit(user_id, embedder.name, model)
    _ready(embedder, model)
    reservation = _reserve(user_id, limits, embedder, model, asked)
    db.session.commit()  # the provider may take a while: no connection is held meanwhile
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
        answered = used.get("model") or model
        _charge(user_id, embedder, model, answered, used.get("prompt_tokens") or 0, reservation)
        raise
    _account(embedder, model, "ok", started, embedded.prompt_tokens)
    _charge(user_id, embedder, model, embedded.model, embedded.prompt_tokens, reservation)
    return embedder, model, embedded


def _reserve(
    user_id: int, limits: Limits, embedder: Embedder, model: str, asked: EmbeddingsRequest
) -> int | None:
    """A user with a budget reserves the call's estimate (its input's tokens, and their cost)
    until the call's deadline, as a chat turn does (or is refused: a 429)."""
    if limits.tokens is None and limits.cost is None:
        return None
    items = asked.inputs.items
    if asked.inputs.tokens:
        tokens = sum(len(item) for item in items)
    else:
        tokens = sum(-(-len(item) // CHARS_PER_TOKEN) for item in items)
    now = clock.now()
    cost = governance().prices.cost(embedder.name, model, model, tokens, 0, None, now)
    deadline = now + timedelta(seconds=current_app.config["PROVIDER_TIMEOUT"])
    return reservations.reserve(user_id, limits, tokens, cost, deadline)


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


def _charge(
    user_id: int,
    embedder: Embedder,
    asked: str,
    answered: str,
    tokens: int,
    reservation: int | None,
) -> None:
    """`tokens` added to the caller's usage and cost, and the call's reservation released, in
    one commit (unless the account is gone: its reservations went with it)."""
    if reservation is not None:
        reservations.release(user_id, reservation)
    if tokens:
        now = clock.now()
        name = embedder.name
        cost = governance().prices.cost(name, asked, answered, tokens, 0, None, now)
        record_cost(embedder.provider, asked, cost)
        ledger.Entry(user_id, now.date(), f"{name}/{answered}", tokens, 0, cost).add()
    try:
        db.session.commit()
    except IntegrityError:  # the account was deleted meanwhile
        db.session.rollback()
    if reservation is not None:
        reservations.settled([reservation])


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
