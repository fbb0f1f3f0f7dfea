"""The settings, under the name a checkout has always used: they live in polygenix/config.py, which
the installed package carries (a wheel holds no top-level module but `polygenix`)."""

from polygenix.config import *  # noqa: F403
