"""Streamed chat turns: the provider's tokens relayed to the client as Server-Sent Events.

    event: start   data: {"session_id", "model", "user_message_id"}
    event: delta   data: {"content": "..."}            (as many as the provider sends)
    event: done    data: <MessageResponse of the stored reply, with usage and finish_reason>
    event: error   data: <the error envelope>           (instead of done; then the stream ends)
    : keep-alive                                        (a comment, while the provider is silent)

The provider's stream is opened, then the user's message is committed while the provider prepares
its answer. A helper thread reads the stream and hands events over a queue, so the response can
send keep-alives while the provider is silent and stop at once when the client goes away. The
reply is stored once, when the stream ends: whole, or (provider failure, client disconnect) the part
received, marked incomplete with the reason.
"""

import contextlib
import contextvars
import json
import logging
import queue
import threading
from collections.abc import Iterator

from flask import current_app

from ..api import envelope
from ..metrics import OPEN_STREAMS
from ..models import User
from ..providers import ProviderError
from ..providers.base import ReplyStream
from . import service
from .schemas import MessageResponseSchema

log = logging.getLogger(__name__)
DISCONNECTED = "The client disconnected before the reply was complete"


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def stream_reply(user: User, content: str, model_name: str, number: int | None) -> Iterator[str]:
    """Start the turn and open the provider's stream now, so that every failure up to here is an
    ordinary error response; return the events to send."""
    config = current_app.config
    opened: ReplyStream | ProviderError | None = None

    def start(provider, model, messages) -> None:
        # Opened before the user's message is stored, which then happens while the provider
        # prepares its answer. (Run side by side, the two shared the interpreter and the commit
        # held up the request.) A failure is kept for after the message is stored.
        nonlocal opened
        try:
            opened = provider.stream(messages, model, config)
        except ProviderError as e:
            opened = e
        except Exception:  # a bug, not the provider: log it, answer 502
            log.exception("opening a provider stream failed")
            opened = ProviderError("The model's stream failed")

    try:
        turn = service.begin_turn(user, content, model_name, number, start)
    except BaseException:
        if opened is not None and not isinstance(opened, ProviderError):
            opened.close()  # the message could not be stored: hang up on the provider
        raise
    if isinstance(opened, ProviderError):
        service.fail_turn(turn, opened)
        raise opened
    return _relay(turn, _Reader(opened), config["STREAM_KEEPALIVE_SECONDS"])


class _Reader:
    """An open provider stream read on a helper thread: what it yields, or how it failed,
    arrives on `events`. The thread runs in a copy of the request's context (log lines keep the
    request's id); it must not touch the database session, which belongs to the request's
    thread."""

    def __init__(self, stream: ReplyStream):
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.stream = stream
        threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._run,),
            name="provider-stream",
            daemon=True,
        ).start()

    def _run(self) -> None:
        try:
            for event in self.stream:
                self.events.put(event)
        except ProviderError as e:
            self.events.put(e)
        except Exception:  # a bug, not the provider: log it, end the stream with a 502
            log.exception("reading a provider stream failed")
            self.events.put(ProviderError("The model's stream failed"))

    def close(self) -> None:
        self.stream.close()


def _relay(turn: service.Turn, reader: _Reader, keepalive: float) -> Iterator[str]:
    parts: list[str] = []
    usage = {"model": None, "prompt_tokens": None, "completion_tokens": None, "finish_reason": None}
    failure: ProviderError | None = None
    events = reader.events
    OPEN_STREAMS.inc()
    try:
        yield sse(
            "start",
            {
                "session_id": turn.session.number,
                "model": f"{turn.provider.NAME}/{turn.model}",
                "user_message_id": turn.question.id,
            },
        )
        while True:
            try:
                item = events.get(timeout=keepalive)
            except queue.Empty:
                yield ": keep-alive\n\n"
                continue
            if isinstance(item, ProviderError):
                failure = item
                break
            for name in usage:
                if getattr(item, name) is not None:
                    usage[name] = getattr(item, name)
            if item.text:
                parts.append(item.text)
                yield sse("delta", {"content": item.text})
            if item.done:
                break
    except GeneratorExit:
        # The client went away: stop reading the provider, keep what it had said.
        reader.close()
        # 499: the client closed the request (nginx's code), so metrics do not blame the provider.
        with contextlib.suppress(service.SessionDeleted):
            _store(turn, parts, usage, ProviderError(DISCONNECTED, status=499))
        raise
    except Exception:
        log.exception("relaying a stream failed")
        failure = ProviderError("The stream failed", status=500)
    finally:
        OPEN_STREAMS.dec()
    reader.close()
    try:
        reply = _store(turn, parts, usage, failure)
    except service.SessionDeleted as e:
        yield sse("error", envelope(404, str(e)))
        return
    if failure is None:
        yield sse("done", MessageResponseSchema().dump(reply))
    else:
        yield sse("error", envelope(failure.status, failure.message))


def _store(turn, parts: list[str], usage: dict, failure: ProviderError | None):
    """The reply, complete or partial; with no text at all, the question is flagged instead."""
    if failure is not None and not parts:
        service.fail_turn(turn, failure)
        return None
    return service.finish_turn(
        turn,
        "".join(parts),
        model=usage["model"],
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
        finish_reason=usage["finish_reason"] if failure is None else None,
        error=failure.message if failure is not None else None,
    )
