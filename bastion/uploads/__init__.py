"""Image uploads: avatars and article images, checked by content and re-encoded."""

from flask import Blueprint

bp = Blueprint("uploads", __name__)
