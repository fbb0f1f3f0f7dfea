"""Password hashing, a bounded number of hashes at a time.

A hash at the default strength (scrypt, N=2^17) holds 128 MiB for ~0.3 s: a burst of logins
hashed all at once would exhaust a worker's memory. At most PASSWORD_HASH_CONCURRENCY run at
once in a process; the others wait, and after PASSWORD_HASH_TIMEOUT seconds get a 503.
"""

import threading
from contextlib import contextmanager
from functools import cache

from flask import Flask, current_app
from flask_smorest import abort
from werkzeug.security import check_password_hash, generate_password_hash

SLOTS = "polygenix.password_slots"


def init_passwords(app: Flask) -> None:
    app.extensions[SLOTS] = threading.BoundedSemaphore(app.config["PASSWORD_HASH_CONCURRENCY"])


@contextmanager
def _slot():
    slots: threading.BoundedSemaphore = current_app.extensions[SLOTS]
    if not slots.acquire(timeout=current_app.config["PASSWORD_HASH_TIMEOUT"]):
        abort(
            503,
            message="Too many password checks at once; try again.",
            headers={"Retry-After": "1"},
        )
    try:
        yield
    finally:
        slots.release()


def hash_password(password: str) -> str:
    with _slot():
        return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def check_password(password_hash: str, password: str) -> bool:
    with _slot():
        return check_password_hash(password_hash, password)


@cache
def _dummy_hash(method: str) -> str:
    return generate_password_hash("not a real password", method=method)


def check_no_password(password: str) -> None:
    """As long as checking a password takes: the answer for an unknown email must not be
    faster than for a wrong password."""
    check_password(_dummy_hash(current_app.config["PASSWORD_HASH_METHOD"]), password)


def outdated(password_hash: str) -> bool:
    """Made with other settings than PASSWORD_HASH_METHOD's (weaker, or simply older)."""
    method = current_app.config["PASSWORD_HASH_METHOD"]
    return password_hash.split("$", 1)[0] != _dummy_hash(method).split("$", 1)[0]
