"""What a reply cost, in US dollars: from MODEL_PRICES_FILE when it prices the model, else from
the `genai-prices` package (maintained prices per provider and model, with cached-input rates;
its data is bundled, so nothing is fetched), else unknown (None).

MODEL_PRICES_FILE is JSON, `{"provider/model": {"input_per_mtok": x, "output_per_mtok": y}}`,
dollars per million tokens; a key may be a glob (`ollama/*`). Exact keys win, then globs in the
file's order.
"""

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from functools import lru_cache

from genai_prices import Usage, calc_price

from ..config import ConfigError

log = logging.getLogger(__name__)
MTOK = Decimal(10**6)
# PolyGenix's provider names -> genai-prices' (providers without prices are absent).
PRICED_PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "google",
    "groq": "groq",
    "mistral": "mistral",
    "deepseek": "deepseek",
    "openrouter": "openrouter",
}
PRICE_KEYS = ("input_per_mtok", "output_per_mtok")


@dataclass(frozen=True)
class Price:
    input_per_mtok: Decimal
    output_per_mtok: Decimal


@dataclass(frozen=True)
class Prices:
    exact: dict[str, Price] = field(default_factory=dict)
    globs: tuple[tuple[str, Price], ...] = ()

    @classmethod
    def load(cls, path: str | None) -> "Prices":
        """The prices of MODEL_PRICES_FILE (none if no file); ConfigError if it is not valid."""
        if not path:
            return cls()
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f, parse_float=Decimal, parse_int=Decimal)
        except (OSError, ValueError) as e:
            raise ConfigError(f"MODEL_PRICES_FILE {path!r} cannot be read as JSON: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError("MODEL_PRICES_FILE must hold a JSON object")
        exact, globs = {}, []
        for name, entry in data.items():
            price = _price(name, entry)
            if any(c in name for c in "*?["):
                globs.append((name, price))
            else:
                exact[name] = price
        return cls(exact, tuple(globs))

    def override(self, name: str) -> Price | None:
        if name in self.exact:
            return self.exact[name]
        return next((price for glob, price in self.globs if fnmatchcase(name, glob)), None)

    def cost(
        self,
        provider: str,
        requested: str,
        answered: str,
        prompt: int,
        completion: int,
        cached: int | None,
        at: datetime,
    ) -> Decimal | None:
        """The cost of `prompt` input tokens (`cached` of them read from the provider's cache)
        and `completion` output tokens (reasoning included), or None if the model's price is
        unknown. `requested` is the model asked for, `answered` the one the provider says
        answered (often a dated version of it): the prices file is looked up by the first,
        then the second; genai-prices by the second, then the first. An override has one
        input price: cached tokens are not discounted."""
        for model in dict.fromkeys((requested, answered)):
            price = self.override(f"{provider}/{model}")
            if price is not None:
                return (prompt * price.input_per_mtok + completion * price.output_per_mtok) / MTOK
        priced_as = PRICED_PROVIDERS.get(provider)
        known = [
            m for m in dict.fromkeys((answered, requested)) if priced_as and _priced(priced_as, m)
        ]
        if not known:
            return None
        model = known[0]
        usage = Usage(
            input_tokens=prompt,
            output_tokens=completion,
            cache_read_tokens=min(cached or 0, prompt),
        )
        try:
            found = calc_price(usage, model, provider_id=priced_as, genai_request_timestamp=at)
        except (LookupError, ValueError) as e:  # no price at that time, or usage it cannot price
            log.warning("no price for %s/%s: %s", provider, model, e)
            return None
        return found.total_price


@lru_cache(maxsize=1024)
def _priced(provider: str, model: str) -> bool:
    """Whether genai-prices knows the model: remembered, as failing to find one takes a scan of
    the provider's models (up to half a millisecond)."""
    try:
        calc_price(Usage(input_tokens=0, output_tokens=0), model, provider_id=provider)
    except LookupError:
        return False
    return True


def _price(name, entry) -> Price:
    if not isinstance(name, str) or "/" not in name:
        raise ConfigError(f"MODEL_PRICES_FILE keys are 'provider/model', got {name!r}")
    if not isinstance(entry, dict) or set(entry) != set(PRICE_KEYS):
        raise ConfigError(f"MODEL_PRICES_FILE[{name!r}] must hold exactly {', '.join(PRICE_KEYS)}")
    for key in PRICE_KEYS:
        value = entry[key]
        if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
            raise ConfigError(f"MODEL_PRICES_FILE[{name!r}].{key} must be a number, 0 or more")
        if value > 10**6:
            raise ConfigError(f"MODEL_PRICES_FILE[{name!r}].{key} is not a plausible price")
    return Price(entry["input_per_mtok"], entry["output_per_mtok"])
