"""Entry point for gunicorn: `gunicorn wsgi:app` from the repository root."""

from dotenv import load_dotenv

load_dotenv()

from polygenix import create_app  # noqa: E402  (settings from .env must be in place first)

app = create_app()
