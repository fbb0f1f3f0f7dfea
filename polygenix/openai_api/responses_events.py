"""A response object as OpenAI's Responses API returns it
(https://platform.openai.com/docs/api-reference/responses/object), and a streamed one as its
typed events (https://platform.openai.com/docs/api-reference/responses-streaming), each with
its `sequence_number`, in OpenAI's order:

    response.created, response.in_progress
    [a reasoning model's thinking: response.output_item.added (reasoning),
     response.content_part.added (reasoning_text), response.reasoning_text.delta...,
     response.reasoning_text.done, response.content_part.done, response.output_item.done]
    response.output_item.added (message), response.content_part.added (output_text),
    response.output_text.delta..., response.output_text.done, response.content_part.done,
    response.output_item.done
    response.completed | response.incomplete (cut at max_output_tokens) | response.failed

`output_text` is not a field of the object: OpenAI's SDKs compute it from `output`.
"""

import json
import time
from collections.abc import Callable

from ..chat.streaming import Events
from .responses_schema import Ids
from .responses_tools import call_items, function_call

# Why a reply stopped short, as OpenAI's incomplete_details.reason names it.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def usage(prompt: int | None, written: int | None, cached=None, reasoning=None) -> dict:
    prompt, written = prompt or 0, written or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached or 0},
        "output_tokens": written,
        "output_tokens_details": {"reasoning_tokens": reasoning or 0},
        "total_tokens": prompt + written,
    }


def reasoning_item(item: str, text: str, status: str = "completed") -> dict:
    content = [{"type": "reasoning_text", "text": text}] if text else []
    return {"id": item, "type": "reasoning", "summary": [], "content": content, "status": status}


def text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item: str, text: str | None, status: str = "completed") -> dict:
    content = [] if text is None else [text_part(text)]
    return {
        "id": item,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def output(
    new_id: Ids, text: str, reasoning: str | None, status: str = "completed", calls=()
) -> list[dict]:
    """A whole reply's output items: its reasoning (if any), its message (if it has text, or
    nothing else), then its function calls."""
    items = [reasoning_item(new_id("rs"), reasoning)] if reasoning else []
    if text or not calls:
        items.append(message_item(new_id("msg"), text, status))
    return items + call_items(calls, new_id)


def outcome(finish_reason: str | None) -> tuple[str, dict | None]:
    """The response's status and incomplete_details for a reply's finish reason."""
    if finish_reason in INCOMPLETE:
        return "incomplete", {"reason": INCOMPLETE[finish_reason]}
    return "completed", None


def response(
    response_id: str,
    created_at: int,
    model: str,
    echo: dict,
    status: str = "in_progress",
    items: list[dict] | None = None,
    used: dict | None = None,
    **fields,
) -> dict:
    """The response object: `fields` sets error, incomplete_details..."""
    body = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": None,
        "incomplete_details": None,
        "max_tool_calls": None,
        "model": model,
        "output": items or [],
        "service_tier": "default",
        "usage": used,
    }
    return body | echo | fields


def failure(status: int, message: str) -> dict:
    code = "rate_limit_exceeded" if status == 429 else "server_error"
    return {"code": code, "message": message}


class ResponseEvents(Events):
    """A streamed response's events. `final(reply)` is the finished response object, which
    the turn's store step may ask for (to keep it) before `done` writes it."""

    def __init__(self, base: dict, new_id: Ids, on_failure: Callable[[dict], None] | None = None):
        self.base = base  # the response object's fields but status, output and usage
        self.new_id = new_id
        self.on_failure = on_failure  # given the failed response before response.failed goes
        self.ended = False  # once its last event (completed, incomplete or failed) is written
        self.body: dict | None = None  # once final
        self.closing = ""  # the events that close the open item, once final
        self.sequence = 0
        self.items: list[dict] = []  # the output items so far
        self.reasoned: list[str] = []
        self.written: list[str] = []
        self.open: str | None = None  # "reasoning", "message" or "call": the item being written
        self.calls: dict[int, int] = {}  # a streamed call's index: its output index

    def _event(self, kind: str, **data) -> str:
        body = {"type": kind, "sequence_number": self.sequence} | data
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"

    def _response(self, status: str, **fields) -> dict:
        return self.base | {"status": status, "output": self.items} | fields

    def start(self, turn) -> str:
        # The same object twice: written once.
        created = json.dumps(self._response("in_progress"), separators=(",", ":"))
        events = ""
        for kind in ("response.created", "response.in_progress"):
            head = f'{{"type":"{kind}","sequence_number":{self.sequence},"response":'
            events += f"event: {kind}\ndata: {head}{created}}}\n\n"
            self.sequence += 1
        return events

    def _where(self) -> dict:
        index = len(self.items) - 1
        return {"item_id": self.items[index]["id"], "output_index": index, "content_index": 0}

    def _add(self, item: dict, part: dict) -> str:
        self.items.append(item)
        added = self._event(
            "response.output_item.added", output_index=len(self.items) - 1, item=item
        )
        return added + self._event("response.content_part.added", **self._where(), part=part)

    def _close(self, status: str = "completed") -> str:
        """The open item's last events."""
        if self.open is None:
            return ""
        if self.open == "call":
            return self._close_call(status)
        where, index = self._where(), len(self.items) - 1
        if self.open == "reasoning":
            text = "".join(self.reasoned)
            self.items[index] = reasoning_item(where["item_id"], text, status)
            part = {"type": "reasoning_text", "text": text}
            events = self._event("response.reasoning_text.done", **where, text=text)
        else:
            text = "".join(self.written)
            self.items[index] = message_item(where["item_id"], text, status)
            part = text_part(text)
            events = self._event("response.output_text.done", **where, text=text, logprobs=[])
        events += self._event("response.content_part.done", **where, part=part)
        events += self._event(
            "response.output_item.done", output_index=index, item=self.items[index]
        )
        self.open = None
        return events

    def _close_call(self, status: str) -> str:
        index = len(self.items) - 1
        item = self.items[index] = self.items[index] | {"status": status}
        where = {"item_id": item["id"], "output_index": index}
        events = self._event(
            "response.function_call_arguments.done",
            **where,
            name=item["name"],
            arguments=item["arguments"],
        )
        self.open = None
        return events + self._event("response.output_item.done", output_index=index, item=item)

    def tool_calls(self, deltas) -> str:
        """Pieces of function calls: each call an item of its own, its arguments as deltas."""
        events = ""
        for delta in deltas:
            if delta.index not in self.calls:  # a call begins
                events += self._close()
                call = {"id": delta.id or "", "name": delta.name or "", "arguments": ""}
                self.items.append(function_call(self.new_id("fc"), call, "in_progress"))
                self.calls[delta.index] = index = len(self.items) - 1
                self.open = "call"
                item = self.items[index]
                events += self._event("response.output_item.added", output_index=index, item=item)
            index = self.calls[delta.index]
            if delta.arguments:
                item = self.items[index]
                item["arguments"] += delta.arguments
                events += self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=delta.arguments,
                )
        return events

    def reasoning(self, text: str) -> str:
        if self.open not in (None, "reasoning") or self.items and self.open is None:
            return ""  # thinking after the answer began: not an item of its own
        events = ""
        if self.open is None:
            item = reasoning_item(self.new_id("rs"), "", "in_progress")
            events = self._add(item, {"type": "reasoning_text", "text": ""})
            self.open = "reasoning"
        self.reasoned.append(text)
        return events + self._event("response.reasoning_text.delta", **self._where(), delta=text)

    def delta(self, text: str) -> str:
        events = ""
        if self.open != "message":
            events = self._close()
            events += self._add(
                message_item(self.new_id("msg"), None, "in_progress"), text_part("")
            )
            self.open, self.written = "message", []
        self.written.append(text)
        return events + self._event(
            "response.output_text.delta", **self._where(), delta=text, logprobs=[]
        )

    def final(self, reply) -> dict:
        """The finished response, for the reply (its open item closed, once)."""
        if self.body is None:
            status, details = outcome(reply.finish_reason)
            # A stream that ended with neither text nor a call failed (turn.finish).
            self.closing = self._close("incomplete" if details else "completed")
            counts = (reply.prompt_tokens, reply.completion_tokens)
            used = usage(*counts, reply.cached_tokens, reply.reasoning_tokens)
            self.body = self._response(status, usage=used, incomplete_details=details)
            if status == "completed":
                self.body["completed_at"] = int(time.time())
        return self.body

    def done(self, turn, reply) -> str:
        self.ended = True
        body = self.final(reply)
        return self.closing + self._event(f"response.{body['status']}", response=body)

    def error(self, status: int, message: str) -> str:
        # The reply may have been final when storing it failed: its closing events go first.
        self.ended = True
        events = self.closing + self._close("incomplete")
        failed = self._response("failed", error=failure(status, message))
        if self.on_failure is not None:
            self.on_failure(failed)
        return events + self._event("response.failed", response=failed)


def replay(body: dict) -> str:
    """A stored response as the events of a stream that gives each item whole: what a retry of
    a streamed call already answered is sent."""
    sequence = iter(range(1 << 30))

    def event(kind: str, **data) -> str:
        data = {"type": kind, "sequence_number": next(sequence)} | data
        return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"

    begun = body | {"status": "in_progress", "output": [], "usage": None, "completed_at": None}
    events = event("response.created", response=begun)
    events += event("response.in_progress", response=begun)
    for index, item in enumerate(body.get("output", [])):
        events += event("response.output_item.added", output_index=index, item=item)
        events += event("response.output_item.done", output_index=index, item=item)
    return events + event(f"response.{body['status']}", response=body)
