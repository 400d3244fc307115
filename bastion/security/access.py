"""Deny by default: every view declares who may call it, enforced in one place.

Views are tagged with one of the decorators below. ``check_every_view_has_policy`` runs at
the end of ``create_app`` and refuses to start when a view has no policy, so a route added
without thought is a start-up error rather than an open door. ``enforce_access_policy`` runs
before every request and is the only place that turns a policy into 401/403.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from flask import Flask, abort, current_app, flash, g, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from bastion.security.fetch_metadata import is_from_another_site
from bastion.security.freshness import referring_page

F = TypeVar("F", bound=Callable[..., Any])
POLICY_ATTR = "_bastion_access"


class Access(StrEnum):
    PUBLIC = "public"
    SIGNED_IN = "signed_in"  # any active, signed-in account
    EDITOR = "editor"
    ADMIN = "admin"
    # Authenticated by a bearer token inside the API layer; cookies are never accepted.
    BEARER = "bearer"


ROLE_POLICIES = {Access.EDITOR: "editor", Access.ADMIN: "admin"}


def _tag(policy: Access) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        setattr(view, POLICY_ATTR, policy)
        return view

    return decorator


public = _tag(Access.PUBLIC)
login_required = _tag(Access.SIGNED_IN)
editor_required = _tag(Access.EDITOR)
admin_required = _tag(Access.ADMIN)
bearer_required = _tag(Access.BEARER)


def role_required(role: str) -> Callable[[F], F]:
    return _tag({"editor": Access.EDITOR, "admin": Access.ADMIN}[role])


OWN_SCRIPTS_ATTR = "_bastion_own_scripts"


def for_own_scripts(view: F) -> F:
    """Mark a view that answers this site's own scripts with a status, not a person with a
    page (the session check of ``history-guard.js``). Another site's request is refused
    (403) before the session is even looked at; a visitor not signed in gets 401, not the
    sign-in page and its "Please sign in" message for whatever page comes next; errors are
    problem+json (``bastion.errors``). No page is rendered, so no flash message waiting for
    the next page is taken. Decorate alongside the access-policy decorator."""
    setattr(view, OWN_SCRIPTS_ATTR, True)
    return view


def is_for_own_scripts(endpoint: str | None) -> bool:
    view = current_app.view_functions.get(endpoint) if endpoint else None
    return bool(getattr(view, OWN_SCRIPTS_ATTR, False))


def _serves_static_files(app: Flask, endpoint: str) -> bool:
    """Flask's own route for the app's or a blueprint's static folder (named ``static``).

    Judged by the folder, not the name alone: any blueprint's view function called
    ``static`` has an endpoint ending in ``.static`` too.
    """
    if endpoint == "static":
        return app.has_static_folder
    name, _, last = endpoint.rpartition(".")
    blueprint = app.blueprints.get(name) if last == "static" else None
    return blueprint is not None and blueprint.has_static_folder


def policy_of(app: Flask, endpoint: str) -> Access | None:
    """The declared policy of an endpoint; static files are public by nature."""
    policy: Access | None = getattr(app.view_functions.get(endpoint), POLICY_ATTR, None)
    if policy is None and _serves_static_files(app, endpoint):
        return Access.PUBLIC
    return policy


def route_policies(app: Flask) -> list[tuple[str, str, Access | None]]:
    """(rule, endpoint, policy) for every route: the basis of the route-policy test."""
    return [
        (rule.rule, rule.endpoint, policy_of(app, rule.endpoint))
        for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule)
    ]


def check_every_view_has_policy(app: Flask) -> None:
    missing = sorted({ep for _, ep, policy in route_policies(app) if policy is None})
    if missing:
        raise RuntimeError(
            "These views declare no access policy (use @public, @login_required, "
            f"@editor_required, @admin_required or @bearer_required): {', '.join(missing)}"
        )


def _denied(status: int, description: str | None = None) -> ResponseReturnValue:
    from bastion.security import audit

    audit.record(
        "authz.denied",
        details={"endpoint": request.endpoint or "", "method": request.method},
    )
    abort(status, description=description)


# Why a signed-in user is turned away from a page of a role they lack, and what to do: a
# bare "not allowed" left new accounts (viewers) wondering why they could not write.
ROLE_NEEDED = {
    "editor": "Writing and editing articles is for editors; your account can read and "
              "comment. An admin can make you an editor.",
    "admin": "This page is for admins.",
}


def _after_sign_in() -> str | None:
    """Where sign-in leads back to: a page itself, or the page a form was sent from.

    A form posted once the session had ended (idle timeout, "sign out everywhere") cannot be
    sent again after signing in, and its own address often answers no GET (a comment's
    ``/articles/<id>/comments``): led there, the visitor met a 405. They go back to the
    form's page instead (``referring_page``: this origin's only), else to the default page.
    """
    if request.method in ("GET", "HEAD"):
        return request.full_path.rstrip("?")
    return referring_page()


def enforce_access_policy() -> ResponseReturnValue | None:
    """before_request: map the endpoint's policy onto the current identity."""
    endpoint = request.endpoint
    if endpoint is None:  # 404/405: let the router's error stand
        return None
    policy = policy_of(current_app, endpoint)
    g.access_policy = policy
    if policy is None:  # unreachable once start-up checks pass; deny all the same
        abort(403)
    own_scripts = is_for_own_scripts(endpoint)
    if own_scripts and is_from_another_site():
        abort(403, description="This address answers only this site's own pages.")
    if policy in (Access.PUBLIC, Access.BEARER):
        return None
    if not current_user.is_authenticated:
        if own_scripts or request.path.startswith("/api/"):
            abort(401)
        # Said on the sign-in page (as Flask-Login's own redirect would): a visitor sent
        # there from a bookmark or a link was otherwise not told why.
        manager = current_app.login_manager  # type: ignore[attr-defined]
        said = (manager.login_message_category, manager.login_message)
        if said not in session.get("_flashes", ()):  # once, however many pages were opened
            flash(manager.login_message, manager.login_message_category)
        back = _after_sign_in()
        return redirect(url_for("auth.login", next=back) if back else url_for("auth.login"))
    for check in current_app.extensions.get("bastion.access_checks", ()):
        if (result := check()) is not None:
            return result  # type: ignore[no-any-return]
    role = ROLE_POLICIES.get(policy)
    if role is not None and not current_user.has_role(role):
        return _denied(403, ROLE_NEEDED.get(role))
    return None


def add_access_check(app: Flask, check: Callable[[], ResponseReturnValue | None]) -> None:
    """Register an extra gate for signed-in users (e.g. mandatory 2FA enrolment)."""
    app.extensions.setdefault("bastion.access_checks", []).append(check)
