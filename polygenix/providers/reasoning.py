"""Which models reason before they answer, and what an effort means in tokens.

A reasoning model spends output tokens thinking before its first word of answer: it gets
`reasoning_max_output_tokens` instead of `max_output_tokens`, and its format may ask for its
thinking to be returned (Gemini's includeThoughts, Groq's reasoning_format).
"""

from fnmatch import fnmatchcase

from .base import ProviderSettings

# `provider/model` globs of the models known to reason, lower-cased. Anthropic's models reason
# only when asked to (a reasoning_effort), so they are not here.
KNOWN = (
    "openai/o1*",
    "openai/o3*",
    "openai/o4*",
    "openai/gpt-5*",
    "deepseek/deepseek-reasoner",
    "gemini/gemini-2.5*",
    "gemini/gemini-3*",
    "mistral/magistral*",
    "groq/qwen/qwen3*",
    "groq/qwen-qwq*",
    "groq/openai/gpt-oss*",
    "groq/deepseek-r1*",
    "openrouter/openai/o1*",
    "openrouter/openai/o3*",
    "openrouter/openai/o4*",
    "openrouter/openai/gpt-5*",
    "openrouter/deepseek/deepseek-r1*",
    "openrouter/google/gemini-2.5*",
    "openrouter/mistralai/magistral*",
    "ollama/deepseek-r1*",
    "ollama/qwen3*",
    "ollama/gpt-oss*",
)

# Thinking budgets for the formats that take a number of tokens (Anthropic, Gemini).
BUDGETS = {"low": 2048, "medium": 8192, "high": 24576}


def reasons(settings: ProviderSettings, model: str) -> bool:
    """Whether `model` of this provider is known (or configured) to reason."""
    name = f"{settings.name}/{model}".lower()
    return any(fnmatchcase(name, pattern.lower()) for pattern in KNOWN + settings.reasoning_models)
