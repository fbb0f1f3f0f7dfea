"""schemathesis against the app's own /openapi.json: every operation, authenticated, every check.

The app is served over real HTTP (werkzeug's threaded server, in this process) and schemathesis
runs as its command-line tool, with a bounded number of examples per operation and a fixed seed
so that a run is repeatable. It must report no failure.
"""

import os
import subprocess
import sys
import threading

import pytest
from werkzeug.serving import make_server

from polygenix.user.service import create_user
from tests.helpers import ROOT

ADMIN, ADMIN_PASSWORD = "fuzz-admin@example.com", "fuzzing admin secret"
pytestmark = pytest.mark.slow


def test_schemathesis_finds_nothing(make_app):
    # High limits: rate limiting is tested elsewhere, and 429s would hide other answers.
    app = make_app({"LOGIN_RATE_LIMIT": "100000/minute", "CHAT_RATE_LIMIT": "100000/minute"})
    with app.app_context():
        create_user(name="Fuzz admin", email=ADMIN, password=ADMIN_PASSWORD, is_admin=True)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                base + "/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "25",
                "--seed",
                "20261126",
                "--generation-deterministic",
                "--no-color",
            ],
            cwd=ROOT,
            env=os.environ
            | {
                "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
                "FUZZ_BASE_URL": base,
                "FUZZ_ADMIN": f"{ADMIN}:{ADMIN_PASSWORD}",
                "PYTHONPATH": str(ROOT),
            },
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "failure" not in result.stdout.splitlines()[-1]
    # It really was authenticated: only the two operations that take a token other than the
    # caller's access token (in the path, or a refresh token) answered nothing but 401.
    warnings = result.stdout.split("WARNINGS")[-1]
    assert "Authentication failed: 2 operations" in warnings, warnings
