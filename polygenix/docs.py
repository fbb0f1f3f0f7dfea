"""Swagger UI's own files, served from the installed swagger-ui-bundle: /docs works offline."""

from flask import Blueprint, send_from_directory
from swagger_ui_bundle import swagger_ui_path

ASSETS_URL = "/docs/assets/"

bp = Blueprint("docs_assets", __name__)


@bp.route(ASSETS_URL + "<path:filename>")
def asset(filename):
    return send_from_directory(str(swagger_ui_path), filename, max_age=86400)
