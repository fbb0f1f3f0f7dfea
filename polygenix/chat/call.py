"""A turn's provider call: `complete` for a whole reply, `open_stream` for a streamed one; and
the sequence every route runs, written once: `answer` (a whole reply: the call, then the
failure or the reply stored) and `called` (a call whose failure is stored; streaming.opened
then stores the start of the stream)."""

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar, overload

from ..models import Message
from ..provider_registry import missing_variable
from ..providers import Completion, ProviderError, ReplyStream
from . import tool_loop
from .store import store, store_failure
from .turn_state import Turn

T = TypeVar("T")


def _ready(turn: Turn) -> str:
    missing = missing_variable(turn.provider, turn.model)
    if missing:
        raise ProviderError(
            f"Model provider {turn.provider.name!r} is not configured: set {missing}", status=503
        )
    if turn.model is None:  # a provider without a default model misses that setting: never here
        raise ProviderError(f"Model provider {turn.provider.name!r} has no model", status=503)
    turn.started = time.monotonic()
    return turn.model


def complete(turn: Turn) -> Completion:
    model = _ready(turn)
    completion = turn.provider.complete(
        turn.messages, model, turn.options, request_id=turn.request_id, tooling=turn.tooling
    )
    if completion.tool_calls:
        taken = tool_loop.call_ids(turn.messages)
        calls = tool_loop.fresh_calls(completion.tool_calls, taken)
        completion = replace(completion, tool_calls=calls)
    return completion


def open_stream(turn: Turn) -> ReplyStream:
    """The provider's stream, once it has started answering (retried until then)."""
    model = _ready(turn)
    return turn.provider.stream(
        turn.messages, model, turn.options, request_id=turn.request_id, tooling=turn.tooling
    )


def called(turn: Turn, call: Callable[[Turn], T]) -> T:
    """`call(turn)`, the provider's call (`complete`, or a route's way to open the stream); a
    failure is stored with the turn (store_failure), then raised."""
    try:
        return call(turn)
    except ProviderError as e:
        store_failure(turn, e)
        raise


@overload
def answer(turn: Turn) -> tuple[Completion, Message]: ...


@overload
def answer(turn: Turn, keep: Callable[[Turn, Completion], T]) -> tuple[Completion, T]: ...


def answer(turn: Turn, keep: Callable[[Turn, Completion], Any] = store) -> tuple[Completion, Any]:
    """A whole reply: the provider called, then the failure stored (and raised, a
    ProviderError) or the reply kept by `keep` (`store`, or a caller's own step that stores the
    turn with more of its own, as a Responses API record). Returns the provider's completion
    and what `keep` returned (`store`: the reply)."""
    completion = called(turn, complete)
    return completion, keep(turn, completion)
