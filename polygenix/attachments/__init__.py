"""Images attached to messages: uploaded through the native API or sent inline through /v1,
recognised from their bytes, kept in the database with the conversation, and swept once no
message uses them."""

from flask import Flask

from .. import jobs
from . import models  # noqa: F401  (the table, for create_all and migrations)

JOB = "sweep_orphan_attachments"
# How often the orphan sweep runs: hourly, or more often for a short ATTACHMENT_ORPHAN_HOURS.
SWEEP_EVERY = 3600.0


def init_attachments(app: Flask) -> None:
    from .store import sweep_orphans

    every = min(SWEEP_EVERY, max(app.config["ATTACHMENT_ORPHAN_HOURS"] * 3600 / 4, 1.0))
    jobs.register(app, JOB, lambda payload: sweep_orphans(), every=every)
