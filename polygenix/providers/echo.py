"""The built-in offline model: answers `Echo: <your message>`, with no key and no network.

It lets a fresh install (and the test suite) hold real conversations end to end.
"""

import re
from collections.abc import Iterator

from .base import NO_OPTIONS, ChatMessage, Completion, Options, ProviderSettings, StreamEvent


class Echo:
    def __init__(self, settings: ProviderSettings | None = None):
        self.settings = settings or ProviderSettings("echo", default_model="echo")

    @property
    def name(self) -> str:
        return self.settings.name

    def missing_setting(self, model: str | None = None) -> None:
        return None

    def output_cap(self, model: str, options: Options = NO_OPTIONS) -> int:
        return 2**31 - 1  # it writes what it was sent, whatever the cap

    def complete(
        self,
        messages: list[ChatMessage],
        model: str,
        options: Options = NO_OPTIONS,
        *,
        request_id: str | None = None,
    ) -> Completion:
        """Options are taken (and recorded) but change nothing: the echo is the echo."""
        reply = f"Echo: {messages[-1]['content']}"
        return Completion(
            content=reply,
            model=model,
            # Whitespace-separated words stand in for tokens, so usage is deterministic.
            prompt_tokens=sum(len(m["content"].split()) for m in messages),
            completion_tokens=len(reply.split()),
            options=options.given(),
        )

    def stream(
        self,
        messages: list[ChatMessage],
        model: str,
        options: Options = NO_OPTIONS,
        *,
        request_id: str | None = None,
    ) -> "EchoStream":
        return EchoStream(self.complete(messages, model, options))


class EchoStream:
    """The echo reply in three pieces cut between words, then the usage."""

    def __init__(self, completion: Completion):
        self.completion = completion
        self.options = completion.options

    def __iter__(self) -> Iterator[StreamEvent]:
        words = re.findall(r"\S+\s*", self.completion.content)
        pieces = min(3, len(words))
        cuts = [round(n * len(words) / pieces) for n in range(pieces + 1)]
        for start, end in zip(cuts, cuts[1:], strict=False):
            yield StreamEvent(text="".join(words[start:end]))
        yield StreamEvent(
            finish_reason=self.completion.finish_reason,
            prompt_tokens=self.completion.prompt_tokens,
            completion_tokens=self.completion.completion_tokens,
            done=True,
        )

    def close(self) -> None:
        pass
