"""Pages for the API: its documentation and the personal-token settings (cookie + CSRF)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api_web", __name__)
