"""gunicorn settings (`make run` uses this file). Each can be overridden on the command line."""

import os

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
