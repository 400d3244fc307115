"""Template helpers: navigation built once from the routes that exist."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_login import current_user

MAIN_LINKS = (("main.index", "Home"), ("content.list_articles", "Articles"))
ACCOUNT_LINKS = (("content.new_article", "Write", "editor"), ("account.index", "Account", None),
                 ("admin.users", "Admin", "admin"))


def register_template_helpers(app: Flask) -> None:
    names: frozenset[str] = frozenset()

    def view_names() -> frozenset[str]:
        nonlocal names
        if not names:  # routes are final after start-up; compute once
            names = frozenset(app.view_functions)
        return names

    def nav_links() -> list[tuple[str, str]]:
        return [(ep, label) for ep, label in MAIN_LINKS if ep in view_names()]

    def account_links() -> list[tuple[str, str]]:
        return [
            (ep, label)
            for ep, label, role in ACCOUNT_LINKS
            if ep in view_names() and (role is None or current_user.has_role(role))
        ]

    @app.context_processor
    def _helpers() -> dict[str, Any]:
        return {"view_names": view_names, "nav_links": nav_links, "account_links": account_links}
