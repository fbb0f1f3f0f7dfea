"""OpenAI Chat Completions wire format, spoken by OpenAI, Groq, DeepSeek, Mistral, OpenRouter and
OpenAI-compatible servers (vLLM, LM Studio, llama.cpp server, Together...).

Reference: https://platform.openai.com/docs/api-reference/chat/create
Bearer auth; the system prompt is the first message with role "system"; the reply is
choices[0].message.content with choices[0].finish_reason; usage.prompt_tokens and
usage.completion_tokens count tokens. Streaming (https://platform.openai.com/docs/api-reference/
chat-streaming): SSE chunks with choices[0].delta.content, usage in a last chunk when
stream_options.include_usage is asked for (Groq also sends x_groq.usage), then `data: [DONE]`.
"""

from .base import ChatMessage, Completion, MalformedResponse, StreamEvent
from .decoders import SSERecord
from .wire import WireFormat, sse_json


class OpenAIChat(WireFormat):
    """`max_tokens_field`: OpenAI and Groq now call the cap `max_completion_tokens`.
    `stream_usage`: ask for usage with stream_options (Mistral takes no stream_options)."""

    def __init__(self, *, max_tokens_field: str = "max_tokens", stream_usage: bool = True):
        self.max_tokens_field = max_tokens_field
        self.stream_usage = stream_usage

    def path(self, model: str) -> str:
        return "/chat/completions"

    def build_payload(self, messages: list[ChatMessage], model: str, max_tokens: int) -> dict:
        return {
            "model": model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            self.max_tokens_field: max_tokens,
        }

    def build_stream_payload(
        self, messages: list[ChatMessage], model: str, max_tokens: int
    ) -> dict:
        payload = super().build_stream_payload(messages, model, max_tokens)
        if self.stream_usage:
            payload["stream_options"] = {"include_usage": True}
        return payload

    def parse_response(self, data: dict, model: str) -> Completion:
        choice = data["choices"][0]
        content = choice["message"].get("content")
        if not isinstance(content, str) or not content:
            raise MalformedResponse("no text in choices[0].message.content")
        usage = data.get("usage") or {}
        return Completion(
            content=content,
            model=data.get("model") or model,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )

    def parse_stream_record(self, record: SSERecord) -> list[StreamEvent]:
        if record.data.strip() == "[DONE]":
            return [StreamEvent(done=True)]
        chunk = sse_json(record)
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            return [StreamEvent(error=str(message))]
        usage = chunk.get("usage") or (chunk.get("x_groq") or {}).get("usage") or {}
        events = [
            StreamEvent(
                text=(choice.get("delta") or {}).get("content") or "",
                finish_reason=choice.get("finish_reason"),
                model=chunk.get("model"),
            )
            for choice in (chunk.get("choices") or [])[:1]
        ]
        if usage:
            events.append(
                StreamEvent(
                    prompt_tokens=usage.get("prompt_tokens"),
                    completion_tokens=usage.get("completion_tokens"),
                    model=chunk.get("model"),
                )
            )
        return events
