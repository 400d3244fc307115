"""Template helpers: navigation built once from the routes that exist, and list links."""

from __future__ import annotations

from typing import Any

from flask import Flask, request, url_for
from flask_login import current_user

from bastion.auth.enrolment import must_enrol

MAIN_LINKS = (("main.index", "Home"), ("content.list_articles", "Articles"))
ACCOUNT_LINKS = (("content.new_article", "Write", "editor"), ("account.index", "Account", None),
                 ("admin.users", "Admin", "admin"))
# Until a role's required 2FA is on, every other page leads back to its set-up: the header
# offers that step alone (bastion.auth.enrolment), not links that all end there.
ENROLMENT_LINKS = (("account.two_factor_setup", "Set up two-factor authentication"),)
AUDIT_FILTERS = ("user", "event", "since", "until")
# The query arguments a page reads, which its own links (pagination, export) carry over.
# Nothing else is copied from the query string: url_for would take keys such as
# ``_external``, ``_scheme``, ``_method`` or ``endpoint`` as its own parameters.
KEPT_QUERY_ARGS: dict[str, tuple[str, ...]] = {
    "content.list_articles": ("q",),
    "admin.users": ("q",),
    "admin.audit_events": AUDIT_FILTERS,
    "admin.export_audit": AUDIT_FILTERS,
}


def url_with_query(endpoint: str, /, **values: Any) -> str:
    """``url_for(endpoint, **values)`` keeping the current request's arguments that page reads.

    Empty arguments are left out; ``values`` (such as ``page``) win over the kept ones.
    """
    names = KEPT_QUERY_ARGS.get(endpoint, ())
    kept = {key: value for key in names if (value := request.args.get(key))}
    return url_for(endpoint, **{**kept, **values})


def register_template_helpers(app: Flask) -> None:
    # A global, not a context value: imported macros (``_pagination.html``) see no context.
    app.add_template_global(url_with_query)
    names: frozenset[str] = frozenset()

    def view_names() -> frozenset[str]:
        nonlocal names
        if not names:  # routes are final after start-up; compute once
            names = frozenset(app.view_functions)
        return names

    def enrolling() -> bool:
        """Signed in, and held at 2FA set-up until it is on."""
        return bool(current_user.is_authenticated and must_enrol(current_user))

    def nav_links() -> list[tuple[str, str]]:
        if enrolling():
            return []
        return [(ep, label) for ep, label in MAIN_LINKS if ep in view_names()]

    def account_links() -> list[tuple[str, str]]:
        if enrolling():
            return list(ENROLMENT_LINKS)
        return [
            (ep, label)
            for ep, label, role in ACCOUNT_LINKS
            if ep in view_names() and (role is None or current_user.has_role(role))
        ]

    @app.context_processor
    def _helpers() -> dict[str, Any]:
        return {"view_names": view_names, "nav_links": nav_links, "account_links": account_links,
                "enrolling": enrolling}
