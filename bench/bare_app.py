"""A bare Flask endpoint: the baseline for P4 in bench/overhead.py."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return {"data": {"message": "hello"}}
