"""gunicorn with PolyGenix's settings: `polygenix serve` (through polygenix/gunicorn_config.py)
and the checkout's gunicorn.conf.py.

Every setting is read from the environment when `settings()` is called (after `.env` is loaded):
POLYGENIX_BIND, WEB_CONCURRENCY, GUNICORN_THREADS and PROMETHEUS_MULTIPROC_DIR. The last must be
set before prometheus_client is first imported, so before polygenix is: a gunicorn master imports
polygenix only through its config, after that variable is set (see `metrics_directory`).
"""

import gc
import glob
import os
import tempfile
from collections.abc import Callable, MutableMapping
from typing import Any

# Threads rather than gevent. A streamed reply is a request that waits on a provider for seconds
# or minutes; a gthread worker gives each one a thread that sleeps in a socket read (releasing
# the GIL), so one worker holds over a hundred open streams while other requests keep their own
# threads, and psycopg, redis-py and requests work unpatched. (Each stream also has a short-lived
# helper thread reading the provider, which lets it send keep-alives and stop at once.)
WORKER_CLASS = "gthread"


def metrics_directory(env: MutableMapping[str, str]) -> str:
    """PROMETHEUS_MULTIPROC_DIR, set in `env` to a new temporary folder if it was not set.

    Prometheus multiprocess mode: every worker writes its samples under this folder and /metrics
    sums them. It must be in the environment before any worker imports prometheus_client.
    """
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="polygenix-metrics-")
    os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    return env["PROMETHEUS_MULTIPROC_DIR"]


def settings(env: MutableMapping[str, str] | None = None) -> dict[str, Any]:
    """gunicorn's settings for PolyGenix; `env` defaults to (and may set) os.environ."""
    env = os.environ if env is None else env
    metrics_directory(env)
    return {
        "proc_name": "polygenix",
        "bind": env.get("POLYGENIX_BIND", "127.0.0.1:8000"),
        "workers": int(env.get("WEB_CONCURRENCY", "2")),
        "worker_class": WORKER_CLASS,
        "threads": int(env.get("GUNICORN_THREADS", "512")),
        # With gthread, `timeout` is the worker's heartbeat, which its main loop keeps sending
        # while requests run on other threads: it restarts a hung worker but never cuts a long
        # stream.
        "timeout": 30,
        "graceful_timeout": 30,
        "keepalive": 5,
        # No access log: /api/auth/verify-token/<token> puts a token in the request line.
        "accesslog": None,
        **HOOKS,
    }


def on_starting(server) -> None:
    # Counts start from zero with each run of the server.
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(path)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def pre_request(worker, req) -> None:
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


def post_worker_init(worker) -> None:
    from .jobs.runner import start_in_web_worker

    # Background jobs run on threads of each web worker unless JOBS_IN_WEB_WORKERS is off.
    start_in_web_worker(worker.wsgi)
    # The app's start-up objects (~125,000) live as long as the worker. Frozen, they are out of
    # the garbage collector's sight, so a full collection scans only what requests create: one
    # took ~75 ms with them, a pause for every thread of the worker.
    gc.collect()
    gc.freeze()


def worker_exit(server, worker) -> None:
    from .jobs.runner import stop_in_web_worker

    # Jobs under way are given back (their lease ends now) so another worker takes them at once.
    stop_in_web_worker(worker.wsgi)


HOOKS: dict[str, Callable] = {
    "on_starting": on_starting,
    "child_exit": child_exit,
    "pre_request": pre_request,
    "post_worker_init": post_worker_init,
    "worker_exit": worker_exit,
}
