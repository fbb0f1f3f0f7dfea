"""A turn's provider call: `complete` for a whole reply, `open_stream` for a streamed one, and
`answer`, what every route runs for a whole reply: the call, then the failure or the reply
stored."""

import time
from dataclasses import replace

from ..provider_registry import missing_variable
from ..providers import Completion, ProviderError, ReplyStream
from . import tool_loop
from .turn_state import Turn


def _ready(turn: Turn) -> str:
    missing = missing_variable(turn.provider, turn.model)
    if missing:
        raise ProviderError(
            f"Model provider {turn.provider.name!r} is not configured: set {missing}", status=503
        )
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
