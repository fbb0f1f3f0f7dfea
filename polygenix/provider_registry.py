"""The app's model providers: one registry built from the configuration at start.

Each provider's `<PREFIX>_API_KEY`, `_BASE_URL`, `_DEFAULT_MODEL` and `_MODELS` become its
settings (see polygenix/providers, which reads no configuration of its own), and the variable
to set is named wherever a provider is not ready. The providers with an embeddings API get an
embedder each, its default model from `<PREFIX>_EMBEDDING_MODEL`.
"""

from flask import Flask, current_app

from .config import EMBEDDING_PROVIDERS, PROVIDER_NAMES, provider_prefix
from .providers import DEFINITIONS, Provider, Registry, build_registry
from .providers.embedder import EMBEDDINGS, Embedders, build_embedders

EXTENSION = "polygenix.providers"
EMBEDDERS = "polygenix.embedders"


def init_providers(app: Flask) -> None:
    config = app.config
    if set(DEFINITIONS) != {"echo", *PROVIDER_NAMES}:
        raise RuntimeError("config.PROVIDER_NAMES must name every provider but echo")
    if set(EMBEDDINGS) != set(EMBEDDING_PROVIDERS):
        raise RuntimeError("config.EMBEDDING_PROVIDERS must name every provider with embeddings")
    configured = {}
    for name in PROVIDER_NAMES:
        prefix = provider_prefix(name)
        configured[name] = {
            "api_key": config.get(f"{prefix}_API_KEY"),
            "base_url": config.get(f"{prefix}_BASE_URL"),
            "default_model": config.get(f"{prefix}_DEFAULT_MODEL"),
            "models": config.get(f"{prefix}_MODELS"),
        }
    # OpenRouter's app attribution (https://openrouter.ai/docs/app-attribution).
    attribution = {"X-Title": config["OPENROUTER_APP_NAME"]}
    if config["OPENROUTER_SITE_URL"]:
        attribution["HTTP-Referer"] = config["OPENROUTER_SITE_URL"]
    configured["openrouter"]["headers"] = attribution
    common = {
        "connect_timeout": config["PROVIDER_CONNECT_TIMEOUT"],
        "timeout": config["PROVIDER_TIMEOUT"],
        "stream_idle_timeout": config["STREAM_IDLE_TIMEOUT"],
        "stream_max_seconds": config["STREAM_MAX_SECONDS"],
        "max_retries": config["PROVIDER_MAX_RETRIES"],
        "max_retry_wait": config["PROVIDER_MAX_RETRY_WAIT"],
        "max_output_tokens": config["MAX_OUTPUT_TOKENS"],
        "reasoning_max_output_tokens": config["REASONING_MAX_OUTPUT_TOKENS"],
        "reasoning_models": tuple(config["REASONING_MODELS"]),
    }
    providers = build_registry(configured, config["MODEL_ALIASES"], common)
    app.extensions[EXTENSION] = providers
    models = {n: config.get(f"{provider_prefix(n)}_EMBEDDING_MODEL") for n in EMBEDDING_PROVIDERS}
    app.extensions[EMBEDDERS] = build_embedders(providers, models)


def registry() -> Registry:
    return current_app.extensions[EXTENSION]


def embedders() -> Embedders:
    return current_app.extensions[EMBEDDERS]


def missing_variable(provider: Provider, model: str | None = None) -> str | None:
    """The environment variable to set before `provider` can be used, or None."""
    setting = provider.missing_setting(model)
    return f"{provider_prefix(provider.name)}_{setting.upper()}" if setting else None
