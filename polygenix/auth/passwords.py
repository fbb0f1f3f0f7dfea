"""Password hashing, a bounded number of hashes at a time.

A hash at the default strength (scrypt, N=2^17) holds 128 MiB for ~0.3 s: a burst of logins
hashed all at once would exhaust a worker's memory. At most PASSWORD_HASH_CONCURRENCY run at
once in a process; the others wait, and after PASSWORD_HASH_TIMEOUT seconds get a 503. The
dummy hash an unknown email is checked against is made when the app starts, before any request.
"""

import threading
from contextlib import contextmanager

from flask import Flask, current_app
from flask_smorest import abort
from werkzeug.security import check_password_hash, generate_password_hash

SLOTS = "polygenix.password_slots"


# A hash of no one's password per PASSWORD_HASH_METHOD, made once per process.
_DUMMIES: dict[str, str] = {}
_DUMMIES_LOCK = threading.Lock()


def init_passwords(app: Flask) -> None:
    app.extensions[SLOTS] = threading.BoundedSemaphore(app.config["PASSWORD_HASH_CONCURRENCY"])
    # Made now, one at a time, rather than by the first logins of a new worker all at once and
    # outside the bound (six of them held 513 MiB with two slots).
    _make_dummy(app.config["PASSWORD_HASH_METHOD"])


def _make_dummy(method: str) -> str:
    with _DUMMIES_LOCK:
        if method not in _DUMMIES:
            _DUMMIES[method] = generate_password_hash("not a real password", method=method)
        return _DUMMIES[method]


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


def _dummy_hash() -> str:
    """The dummy hash for PASSWORD_HASH_METHOD: made at start, or (the method changed since) in
    a slot like any other hash."""
    method = current_app.config["PASSWORD_HASH_METHOD"]
    dummy = _DUMMIES.get(method)
    if dummy is None:
        with _slot():
            dummy = _make_dummy(method)
    return dummy


def check_no_password(password: str) -> None:
    """As long as checking a password takes: the answer for an unknown email must not be
    faster than for a wrong password."""
    check_password(_dummy_hash(), password)


def outdated(password_hash: str) -> bool:
    """Made with other settings than PASSWORD_HASH_METHOD's (weaker, or simply older)."""
    return password_hash.split("$", 1)[0] != _dummy_hash().split("$", 1)[0]
