"""A streamed chat turn: the provider's tokens relayed to the client as Server-Sent Events.

    event: start     data: {"session_id", "model", "user_message_id"}
    event: reasoning data: {"content": "..."}          (a reasoning model's thinking, if any)
    event: delta     data: {"content": "..."}          (as many as the provider sends)
    event: done    data: <MessageResponse of the stored reply, with usage and finish_reason>
    event: error   data: <the error envelope>           (instead of done; then the stream ends)
    : keep-alive                                        (a comment, while the provider is silent)

The same steps as a plain turn (turn.py): prepare, open the provider's stream (every failure up
to its first byte is an ordinary error response, the failure stored as usual), store the user's
message, then relay. A helper thread reads the provider and hands events over a queue, so the
response can send keep-alives while the provider is silent and stop at once when the client goes
away. The text is saved as it arrives, at most every STREAM_SAVE_INTERVAL; when the stream ends
the reply is stored whole or, cut short (provider failure, client disconnect), as the part
received, marked incomplete with the reason. No exception leaves the stream: whatever fails
becomes `event: error`, and the turn is flagged as far as the database allows (a reply left
leased is flagged by the sweep).
"""

import contextlib
import contextvars
import json
import logging
import queue
import threading
from collections.abc import Iterator

from flask import current_app

from ..errors import Conflict, SessionDeleted, envelope, outage
from ..extensions import db
from ..governance import reservations
from ..metrics import OPEN_STREAMS
from ..providers import ProviderError, ReplyStream
from ..providers.client import merge
from . import tool_loop
from . import turn as turns
from .schemas import MessageResponseSchema

log = logging.getLogger(__name__)
DISCONNECTED = "The client disconnected before the reply was complete"


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class Events:
    """How a stream's events are written: PolyGenix's own (here), or OpenAI's chunks
    (openai_api/streaming.py)."""

    def start(self, turn: turns.Turn) -> str:
        return sse(
            "start",
            {
                "session_id": turn.stored_session.number,
                "model": turn.model_name,
                "user_message_id": turn.question_id,
            },
        )

    def reasoning(self, text: str) -> str:
        return sse("reasoning", {"content": text})

    def delta(self, text: str) -> str:
        return sse("delta", {"content": text})

    def tool_calls(self, deltas: tuple) -> str:
        """Pieces of tool calls (ToolCallDelta): only /v1 turns offer tools."""
        return ""

    def done(self, turn: turns.Turn, reply) -> str:
        return sse("done", MessageResponseSchema().dump(reply))

    def error(self, status: int, message: str) -> str:
        return sse("error", envelope(status, message))

    def keepalive(self) -> str:
        return ": keep-alive\n\n"


def opened(turn: turns.Turn) -> tuple[turns.Turn, "_Reader"]:
    """Open the provider's stream and store the user's message now, so that every failure up
    to here is an ordinary error response (a provider failure stored as usual)."""
    stream = turns.called(turn, _open)
    try:
        turns.start(turn)
    except BaseException:
        stream.close()  # the message could not be stored: hang up on the provider
        raise
    # The view returns (and its request ends, as far as Flask's teardown goes) before the
    # stream is relayed: the stream itself releases the call's budget reservation.
    reservations.hand_over(turn.reservation)
    return turn, _Reader(stream)


def _open(turn: turns.Turn) -> ReplyStream:
    try:
        return turns.open_stream(turn)
    except ProviderError:
        raise
    except Exception:  # a bug, not the provider: log it, answer 502
        log.exception("opening a provider stream failed")
        raise ProviderError("The model's stream failed") from None


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


def _save(turn: turns.Turn, parts: list[str], thinking: list[str], usage: dict) -> None:
    """Save the text and tool calls so far; a database that fails here does not end the stream
    (the final store tries again, and the sweep flags what could never be stored)."""
    try:
        turns.save_progress(turn, "".join(parts), "".join(thinking), usage.get("tool_calls"))
    except SessionDeleted:
        raise
    except Exception as e:
        if outage(e) is None:
            raise
        log.warning("saving a streamed reply failed: %s", type(e).__name__)
        with contextlib.suppress(Exception):
            db.session.rollback()


def relay(started: tuple[turns.Turn, "_Reader"], events: Events) -> Iterator[str]:
    """The events of an opened stream, until its end, storing the reply as it goes; whatever
    ends it, the call's budget reservation goes with it."""
    try:
        yield from _relay(started, events)
    finally:
        turns.release_unsettled(started[0])


def _relay(started: tuple[turns.Turn, "_Reader"], events: Events) -> Iterator[str]:
    turn, reader = started
    keepalive = current_app.config["STREAM_KEEPALIVE_SECONDS"]
    parts: list[str] = []
    thinking: list[str] = []
    usage: dict = {}  # usage, model and finish reason so far
    failure: ProviderError | None = None
    taken = tool_loop.call_ids(turn.messages)  # a reply's calls take none of these ids
    OPEN_STREAMS.inc()
    try:
        if begun := events.start(turn):  # OpenAI's chunks may begin with the first piece
            yield begun
        while True:
            try:
                item = reader.events.get(timeout=keepalive)
            except queue.Empty:
                yield events.keepalive()
                _save(turn, parts, thinking, usage)  # renews the lease of a stream alive but silent
                continue
            if isinstance(item, ProviderError):
                failure = item
                break
            if item.tool_calls:
                item = tool_loop.fresh_event(item, taken)
            merge(item, usage)
            if item.reasoning:
                thinking.append(item.reasoning)
                yield events.reasoning(item.reasoning)
            if item.text:
                parts.append(item.text)
                yield events.delta(item.text)
            if item.tool_calls:
                yield events.tool_calls(item.tool_calls)
            # A reply that only calls tools saves (and renews its lease) as one with text does.
            if (item.text or item.reasoning or item.tool_calls) and turns.due(turn):
                _save(turn, parts, thinking, usage)
            if item.done:
                break
    except GeneratorExit:
        # The client went away: stop reading the provider, keep what it had said.
        reader.close()
        # 499: the client closed the request (nginx's code), so metrics do not blame the provider.
        with contextlib.suppress(Exception):
            gone = ProviderError(DISCONNECTED, status=turns.CLIENT_CLOSED)
            _finish(turn, reader, parts, thinking, usage, gone)
        raise
    except SessionDeleted as e:
        failure = ProviderError(str(e), status=e.status)
    except Exception as e:
        log.exception("relaying a stream failed")
        code, message = outage(e) or (500, "The stream failed")
        failure = ProviderError(message, status=code)
    finally:
        OPEN_STREAMS.dec()
    reader.close()
    reply = None
    try:
        # Even when the session is gone (a 404, a 401 with the account): what the call used counts.
        reply, failure = _finish(turn, reader, parts, thinking, usage, failure)
    except SessionDeleted as e:
        failure = ProviderError(str(e), status=e.status)
    except Conflict as e:  # a regenerate or edit whose conversation changed meanwhile
        failure = ProviderError(str(e), status=409)
    except Exception as e:
        log.exception("storing a streamed reply failed")
        code, message = outage(e) or (500, "The reply could not be stored")
        failure = ProviderError(message, status=code)
        with contextlib.suppress(Exception):
            db.session.rollback()
    if failure is None:
        yield events.done(turn, reply)
    else:
        yield events.error(failure.status, failure.message)


def _finish(turn, reader, parts, thinking, usage, failure):
    options = getattr(reader.stream, "options", {})
    return turns.finish(turn, "".join(parts), "".join(thinking), usage, options, failure)
