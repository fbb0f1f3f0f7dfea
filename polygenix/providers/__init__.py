"""Provider registry and model-name resolution.

A model name is `provider` (that provider's default model) or `provider/model-id` (the part after
the first `/` passed through verbatim); provider names are case-insensitive. Aliases (built in,
plus MODEL_ALIASES) map other names, such as the original web client's menu labels, to those.
"""

from collections.abc import Mapping
from typing import Any

from . import anthropic, echo, gemini, ollama, openai_chat
from .base import ChatMessage, Completion, MalformedResponse, Provider, ProviderError
from .http import HTTPProvider

PROVIDERS: dict[str, Provider] = {
    provider.NAME: provider
    for provider in [
        echo,
        HTTPProvider(
            "groq",
            openai_chat,
            base_url="https://api.groq.com/openai/v1",
            default_model="llama-3.3-70b-versatile",
            options={"max_tokens_field": "max_completion_tokens"},
        ),
        HTTPProvider(
            "openai",
            openai_chat,
            base_url="https://api.openai.com/v1",
            default_model="gpt-4.1-mini",
            options={"max_tokens_field": "max_completion_tokens"},
        ),
        HTTPProvider(
            "deepseek",
            openai_chat,
            base_url="https://api.deepseek.com/v1",
            default_model="deepseek-chat",
        ),
        HTTPProvider(
            "mistral",
            openai_chat,
            base_url="https://api.mistral.ai/v1",
            default_model="mistral-small-latest",
            options={"stream_usage": False},  # no stream_options there; usage comes anyway
        ),
        HTTPProvider(
            "openrouter",
            openai_chat,
            base_url="https://openrouter.ai/api/v1",
            default_model="openai/gpt-4o-mini",
            # OpenRouter's app attribution header (https://openrouter.ai/docs/api-reference).
            extra_headers={"X-Title": "PolyGenix"},
        ),
        HTTPProvider(
            "anthropic",
            anthropic,
            base_url="https://api.anthropic.com",
            default_model="claude-haiku-4-5",
        ),
        HTTPProvider(
            "gemini",
            gemini,
            base_url="https://generativelanguage.googleapis.com/v1beta",
            default_model="gemini-2.5-flash",
        ),
        HTTPProvider(
            "ollama",
            ollama,
            base_url="http://127.0.0.1:11434",
            default_model="llama3.2",
            key_required=False,
        ),
        # Any server speaking OpenAI's format; it has no default address or model of its own.
        HTTPProvider(
            "openai-compatible", openai_chat, base_url=None, default_model=None, key_required=False
        ),
    ]
}

# The original web client's menu labels, lower-cased as it sends them.
BUILTIN_ALIASES = {
    "deepseek r1": "deepseek/deepseek-reasoner",
    "claude sonet": "anthropic",
    "claude sonnet": "anthropic",
    "claude": "anthropic",
}

__all__ = [
    "PROVIDERS",
    "ChatMessage",
    "Completion",
    "MalformedResponse",
    "Provider",
    "ProviderError",
    "UnknownModelError",
    "catalogue",
    "resolve",
]


class UnknownModelError(LookupError):
    """The model name names no provider PolyGenix has."""


def resolve(name: str, config: Mapping[str, Any]) -> tuple[Provider, str | None]:
    """Map a model name to its provider client and the provider's model id.

    The model id is None when the provider has no default model configured.
    """
    key = " ".join(name.split()).lower()
    target = config.get("MODEL_ALIASES", {}).get(key) or BUILTIN_ALIASES.get(key) or name.strip()
    provider_name, _, model = target.partition("/")
    provider = PROVIDERS.get(provider_name.strip().lower())
    if provider is None:
        raise UnknownModelError(
            f"Unknown model {name!r}. Available models: {', '.join(available_names(config))}"
        )
    return provider, model.strip() or provider.default_model(config)


def available_names(config: Mapping[str, Any]) -> list[str]:
    return [entry["id"] for entry in catalogue(config) if entry["available"]]


def catalogue(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each provider's default model and its `<NAME>_MODELS`, and whether it can be used now."""
    entries = []
    for name, provider in PROVIDERS.items():
        available = provider.missing_setting(config) is None
        default = provider.default_model(config)
        for model in provider.models(config) or [None]:
            entries.append(
                {
                    "id": f"{name}/{model}" if model else name,
                    "provider": name,
                    "model": model,
                    "default": model is not None and model == default,
                    "available": available,
                }
            )
    return entries
