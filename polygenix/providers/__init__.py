"""Provider registry and model-name resolution.

A model name is `provider` (that provider's default model) or `provider/model-id` (the part after
the first `/` passed through verbatim); provider names are case-insensitive.
"""

from collections.abc import Mapping
from typing import Any

from . import echo
from .base import ChatMessage, Completion, Provider, ProviderError

PROVIDERS: dict[str, Provider] = {echo.NAME: echo}

__all__ = [
    "PROVIDERS",
    "ChatMessage",
    "Completion",
    "Provider",
    "ProviderError",
    "UnknownModelError",
    "catalogue",
    "resolve",
]


class UnknownModelError(LookupError):
    """The model name names no provider PolyGenix has."""


def resolve(name: str, config: Mapping[str, Any]) -> tuple[Provider, str]:
    """Map a model name to its provider client and the provider's model id."""
    provider_name, _, model = name.strip().partition("/")
    provider = PROVIDERS.get(provider_name.strip().lower())
    if provider is None:
        raise UnknownModelError(
            f"Unknown model {name!r}. Available models: {', '.join(available_names(config))}"
        )
    return provider, model.strip() or provider.default_model(config)


def available_names(config: Mapping[str, Any]) -> list[str]:
    return [entry["id"] for entry in catalogue(config) if entry["available"]]


def catalogue(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every provider's default model, and whether it can be used now."""
    return [
        {
            "id": f"{name}/{provider.default_model(config)}",
            "provider": name,
            "model": provider.default_model(config),
            "available": provider.is_configured(config),
        }
        for name, provider in sorted(PROVIDERS.items())
    ]
