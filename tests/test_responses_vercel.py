"""The Vercel AI SDK's default `openai('…')` model, which calls the Responses API, against a
real HTTP server of the app and the fake providers: generateText, streamText continuing it by
previousResponseId, and generateObject (text.format json_schema).

The SDK is a test-only Node dependency (tests/vercel/package.json, exact versions, its
package-lock.json committed) that this module installs with `npm ci` the first time; without
node and npm on the PATH, or a registry to install from, the test is skipped.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import serving

HERE = Path(__file__).resolve().parent / "vercel"


@pytest.fixture(scope="module")
def node_project():
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are needed for the Vercel AI SDK")
    if not (HERE / "node_modules" / "ai").is_dir():
        installed = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if installed.returncode != 0:  # no registry to install from (an offline machine)
            pytest.skip("npm ci failed: " + installed.stderr[-500:])
    return HERE


def run(node_project, base: str, key: str, model: str) -> dict:
    done = subprocess.run(
        ["node", "responses.mjs"],
        cwd=node_project,
        env=os.environ
        | {"POLYGENIX_BASE_URL": base + "/v1", "POLYGENIX_KEY": key, "POLYGENIX_MODEL": model},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {line["name"]: line for line in map(json.loads, done.stdout.splitlines())}


@pytest.mark.parametrize("model", ["openai", "anthropic", "gemini"])
def test_the_vercel_ai_sdks_default_openai_model(node_project, provider_app, client, ada, model):
    key = client.post("/api/keys", headers=ada, json={"name": "vercel"}).json["key"]
    with serving(provider_app) as base:
        said = run(node_project, base, key, model)
    generated, streamed = said["generate"], said["stream"]
    assert generated["text"].startswith("Hello from ") and generated["id"].startswith("resp_")
    assert generated["finish"] == "stop" and generated["usage"]["totalTokens"] > 0
    assert streamed["text"] == "Hello from the stream" and streamed["finish"] == "stop"
    assert streamed["id"].startswith("resp_") and streamed["id"] != generated["id"]
    assert said["object"]["object"]["answer"].startswith("Hello from ")
    assert said["tools"]["calls"] == ["get_weather"] and said["tools"]["steps"] == 2
    assert said["tools"]["text"].startswith("Tool said: ")
    history = client.get("/api/ai_chat/history", headers=ada).json
    conversation = [s for s in history if s["messages"][0]["content"] == "What is 2+2?"]
    [session] = conversation  # the stream continued the first response's session
    contents = [m["content"] for m in session["messages"]]
    assert contents[0] == "What is 2+2?" and contents[2] == "And then?"
