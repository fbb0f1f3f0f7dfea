"""gunicorn's configuration when `polygenix serve` runs it (`--config
python:polygenix.gunicorn_config`): PolyGenix's settings (serving.py), read from the environment."""

from .serving import settings

globals().update(settings())
