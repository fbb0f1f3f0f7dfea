"""Storing a whole reply (not streamed): the user's message and the reply, or the message
flagged with the provider's failure, in one transaction (commit.py); what the call used counted
either way (governance/charging.py)."""

from ..governance import charging
from ..models import Message
from ..providers import Completion, ProviderError
from ..providers.base import USAGE
from . import titles
from .commit import commit_again, commit_question
from .turn_state import Kind, Turn


def store(turn: Turn, completion: Completion) -> Message:
    """The user's message and the reply, in one transaction (neither if the turn is not to
    be kept: the reply is then returned unsaved)."""
    charging.account(turn, "ok", completion.prompt_tokens, completion.completion_tokens)
    model = completion.model or turn.model
    counts = {name: getattr(completion, name) for name in USAGE}
    usage, cost = charging.charge(
        turn, model, counts, completion.content, completion.reasoning or ""
    )
    reply = Message(
        is_bot=True,
        content=completion.content,
        model=f"{turn.provider.name}/{model}",
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        reasoning_tokens=completion.reasoning_tokens,
        cached_tokens=completion.cached_tokens,
        reasoning=completion.reasoning,
        options=completion.options,
        finish_reason=completion.finish_reason,
        latency_ms=turn.latency_ms,
        cost_usd=charging.dollars(cost),
        tool_calls=[dict(call) for call in completion.tool_calls] or None,
    )
    if turn.kind.again:
        commit_again(turn, reply, usage)
    elif turn.persist:
        commit_question(turn, reply, whole=True, usage=usage)
        titles.schedule(turn)
    else:
        charging.count_alone(turn, usage)
    return reply


def store_failure(turn: Turn, error: ProviderError) -> None:
    """The model gave nothing: the user's message is stored, flagged with the error (and
    whatever the call used counted, when the provider answered with no usable reply)."""
    charging.account(turn, str(error.status))
    usage = charging.used_without_reply(turn, error.usage)
    if turn.kind is Kind.EDIT:  # the new words are kept, flagged like any failed question
        commit_again(turn, None, usage, error=error.message)
    elif turn.persist and not turn.kind.again:
        commit_question(turn, error=error.message, usage=usage)
    else:  # a failed regenerate changes nothing: the earlier reply stays current
        charging.count_alone(turn, usage)
