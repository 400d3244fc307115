from flask import Blueprint

bp = Blueprint("content", __name__)
