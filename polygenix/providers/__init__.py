"""Model providers as a library: what each provider is, and a registry that resolves model names.

A model name is `provider` (that provider's default model) or `provider/model-id` (the part after
the first `/` passed through verbatim); provider names are case-insensitive. Aliases (built in,
plus the app's own) map other names, such as the original web client's menu labels, to those.

The app builds one `Registry` at start from its configuration (`build_registry`); nothing here
reads the configuration, the request or the database.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .anthropic import Anthropic
from .base import (
    ChatMessage,
    Completion,
    MalformedResponse,
    Options,
    Provider,
    ProviderError,
    ProviderSettings,
    ReplyStream,
    StreamEvent,
    ToolCallDelta,
)
from .client import HTTPProvider
from .echo import Echo
from .gemini import Gemini
from .messages import (
    Base64Source,
    ContentPart,
    ImagePart,
    TextPart,
    ToolCall,
    UnsupportedInput,
    URLSource,
)
from .ollama import Ollama
from .openai_chat import DeepSeek, Groq, Mistral, OpenAI, OpenAIChat, OpenRouter
from .tools import NO_TOOLING, NamedTool, ResponseFormat, Tool, ToolChoice, Tooling
from .wire import WireFormat

__all__ = [
    "DEFINITIONS",
    "NO_TOOLING",
    "Base64Source",
    "ChatMessage",
    "Completion",
    "ContentPart",
    "ImagePart",
    "MalformedResponse",
    "NamedTool",
    "Options",
    "Provider",
    "ProviderError",
    "ProviderSettings",
    "Registry",
    "ReplyStream",
    "ResponseFormat",
    "StreamEvent",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "Tooling",
    "URLSource",
    "UnknownModelError",
    "UnsupportedInput",
    "build_registry",
]


@dataclass(frozen=True)
class Definition:
    """What a provider is when nothing is configured: its format, address and default model."""

    wire: WireFormat | None  # None: the built-in echo model
    base_url: str | None
    default_model: str | None
    key_required: bool = True


DEFINITIONS: dict[str, Definition] = {
    "echo": Definition(None, None, "echo", key_required=False),
    "groq": Definition(Groq(), "https://api.groq.com/openai/v1", "llama-3.3-70b-versatile"),
    "openai": Definition(OpenAI(), "https://api.openai.com/v1", "gpt-4.1-mini"),
    "deepseek": Definition(DeepSeek(), "https://api.deepseek.com/v1", "deepseek-chat"),
    "mistral": Definition(Mistral(), "https://api.mistral.ai/v1", "mistral-small-latest"),
    "openrouter": Definition(OpenRouter(), "https://openrouter.ai/api/v1", "openai/gpt-4o-mini"),
    "anthropic": Definition(Anthropic(), "https://api.anthropic.com", "claude-haiku-4-5"),
    "gemini": Definition(
        Gemini(), "https://generativelanguage.googleapis.com/v1beta", "gemini-2.5-flash"
    ),
    "ollama": Definition(Ollama(), "http://127.0.0.1:11434", "llama3.2", key_required=False),
    # Any server speaking OpenAI's format; it has no default address or model of its own.
    "openai-compatible": Definition(OpenAIChat(), None, None, key_required=False),
}

# The original web client's menu labels, lower-cased as it sends them.
BUILTIN_ALIASES = {
    "deepseek r1": "deepseek/deepseek-reasoner",
    "claude sonet": "anthropic",
    "claude sonnet": "anthropic",
    "claude": "anthropic",
}


class UnknownModelError(LookupError):
    """The model name names no provider PolyGenix has."""


def _normal(name: str) -> str:
    return " ".join(name.split()).lower()


class Registry:
    """The app's providers by name, and the aliases that lead to them."""

    def __init__(self, providers: Mapping[str, Provider], aliases: Mapping[str, str]):
        self.providers = dict(providers)
        self.aliases = BUILTIN_ALIASES | {_normal(k): v for k, v in aliases.items()}

    def __iter__(self) -> Iterator[str]:
        return iter(self.providers)

    def __getitem__(self, name: str) -> Provider:
        return self.providers[name]

    def get(self, name: str) -> Provider | None:
        return self.providers.get(name.strip().lower())

    def resolve(self, name: str) -> tuple[Provider, str | None]:
        """The provider client a model name means, and the provider's model id (None when
        the provider has no default model)."""
        target = self.aliases.get(_normal(name)) or name.strip()
        provider_name, _, model = target.partition("/")
        provider = self.get(provider_name)
        if provider is None:
            raise UnknownModelError(
                f"Unknown model {name!r}. Available models: {', '.join(self.available_names())}"
            )
        return provider, model.strip() or provider.settings.default_model

    def available_names(self) -> list[str]:
        return [entry["id"] for entry in self.catalogue() if entry["available"]]

    def catalogue(self) -> list[dict[str, Any]]:
        """Each provider's default model and its listed models, and whether it can be used."""
        entries = []
        for name, provider in self.providers.items():
            available = provider.missing_setting() is None
            default = provider.settings.default_model
            listed: list[str | None] = [*provider.settings.listed_models()]
            for model in listed or [None]:
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


def build_registry(
    configured: Mapping[str, Mapping[str, Any]],
    aliases: Mapping[str, str],
    common: Mapping[str, Any],
) -> Registry:
    """One client per provider in DEFINITIONS.

    `configured[name]` holds what the app was told of that provider (`api_key`, `base_url`,
    `default_model`, `models`, `headers`); a missing or None value takes the definition's
    default. `common` holds the settings every provider shares (timeouts, retries, output caps,
    reasoning models).
    """
    providers: dict[str, Provider] = {}
    for name, definition in DEFINITIONS.items():
        given = {k: v for k, v in (configured.get(name) or {}).items() if v is not None}
        base_url = given.get("base_url") or definition.base_url
        settings = ProviderSettings(
            name=name,
            api_key=given.get("api_key"),
            base_url=base_url.rstrip("/") if base_url else None,
            default_model=given.get("default_model") or definition.default_model,
            models=tuple(given.get("models") or ()),
            headers=dict(given.get("headers") or {}),
            **common,
        )
        if definition.wire is None:
            providers[name] = Echo(settings)
        else:
            providers[name] = HTTPProvider(
                settings, definition.wire, key_required=definition.key_required
            )
    return Registry(providers, aliases)
