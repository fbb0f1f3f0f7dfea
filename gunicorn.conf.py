"""gunicorn settings for a checkout (`make run`, `gunicorn wsgi:app`): the ones `polygenix serve`
uses, from polygenix/serving.py. Each can be overridden on the command line."""

import os
import tempfile

from dotenv import load_dotenv

# Settings in .env apply here too, as they do to the app (wsgi.py reads it as well).
load_dotenv()
# Set before polygenix (and so prometheus_client) is imported below: see polygenix/serving.py.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="polygenix-metrics-"))

from polygenix.serving import settings  # noqa: E402

# bind (POLYGENIX_BIND), workers (WEB_CONCURRENCY), threads (GUNICORN_THREADS), the metrics
# folder (PROMETHEUS_MULTIPROC_DIR), gthread workers, timeouts and the server hooks.
globals().update(settings())
