"""What validating a `/v1` body costs: the time `parse` takes (the schema's load and the reading
of its result) for a Chat Completions and a Responses body, typical and maximal
(V1_MAX_MESSAGES messages, the default 500).

In process, in an app context of the app with its default settings, no request and no
database; the best of --repeat runs of --number calls each.

    .venv/bin/python bench/v1_schemas.py
"""

import argparse
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from polygenix import create_app  # noqa: E402
from polygenix.openai_api import responses_schema, schemas  # noqa: E402

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def bodies(most: int) -> dict:
    one = [{"role": "user", "content": "bench"}]
    many = [
        {"role": "user" if n % 2 else "assistant", "content": f"m{n}"} for n in range(most - 1)
    ] + one
    return {
        "chat completion, one message": lambda: schemas.parse({"model": "openai", "messages": one}),
        "chat completion, one message, a tool, temperature": lambda: schemas.parse(
            {"model": "openai", "messages": one, "tools": TOOLS, "temperature": 0.5}
        ),
        f"chat completion, {most} messages": lambda: schemas.parse(
            {"model": "openai", "messages": many}
        ),
        "response, a string input": lambda: responses_schema.parse(
            {"model": "openai", "input": "bench"}, lambda _: None
        ),
        f"response, {most} input messages": lambda: responses_schema.parse(
            {"model": "openai", "input": many}, lambda _: None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200, help="calls per run (÷50 for maximal)")
    parser.add_argument("--repeat", type=int, default=7, help="runs (the best one counts)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder}/bench.db",
                "SECRET_KEY": "s" * 48,
                "JWT_SECRET_KEY": "j" * 64,
            }
        )
        with app.app_context():
            most = app.config["V1_MAX_MESSAGES"]
            print("| body | µs per parse (best run) |\n|---|---|")
            for name, parse in bodies(most).items():
                number = args.number if str(most) not in name else max(1, args.number // 50)
                best = min(timeit.repeat(parse, number=number, repeat=args.repeat)) / number
                print(f"| {name} | {best * 1e6:,.1f} |")


if __name__ == "__main__":
    main()
