"""gunicorn settings (`make run` uses this file). Each can be overridden on the command line."""

import gc
import glob
import os
import tempfile

from dotenv import load_dotenv

# Settings in .env apply here too, as they do to the app (wsgi.py reads it as well).
load_dotenv()

# Prometheus multiprocess mode: every worker writes its samples under this directory and /metrics
# sums them. It must be in the environment before any worker imports prometheus_client.
METRICS_DIR = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="polygenix-metrics-")
)
os.makedirs(METRICS_DIR, exist_ok=True)

bind = os.environ.get("POLYGENIX_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# Threads rather than gevent. A streamed reply is a request that waits on a provider for seconds
# or minutes; a gthread worker gives each one a thread that sleeps in a socket read (releasing
# the GIL), so one worker holds over a hundred open streams while other requests keep their own
# threads, and psycopg, redis-py and requests work unpatched. (Each stream also has a short-lived
# helper thread reading the provider, which lets it send keep-alives and stop at once.)
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "128"))

# With gthread, `timeout` is the worker's heartbeat, which its main loop keeps sending while
# requests run on other threads: it restarts a hung worker but never cuts a long stream.
timeout = 30
graceful_timeout = 30
keepalive = 5

# No access log: /api/auth/verify-token/<token> puts a token in the request line.
accesslog = None


def on_starting(server):
    # Counts start from zero with each run of the server.
    for path in glob.glob(os.path.join(METRICS_DIR, "*.db")):
        os.remove(path)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def pre_request(worker, req):
    # A body over MAX_CONTENT_LENGTH is answered 413 without being read: the connection cannot
    # serve another request after it, so the answer says `Connection: close` rather than
    # promising a keep-alive that gunicorn then breaks.
    limit = getattr(worker.wsgi, "config", {}).get("MAX_CONTENT_LENGTH")
    for name, value in req.headers:
        if name == "CONTENT-LENGTH" and limit is not None and value.isdigit():
            if int(value) > limit:
                req.force_close()
        elif name == "TRANSFER-ENCODING" and limit is not None:
            # Its length is known only once read: a request that could be over the limit.
            req.force_close()


def post_worker_init(worker):
    # The app's start-up objects (~125,000) live as long as the worker. Frozen, they are out of
    # the garbage collector's sight, so a full collection scans only what requests create: one
    # took ~75 ms with them, a pause for every thread of the worker.
    gc.collect()
    gc.freeze()
