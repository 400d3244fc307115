"""Deny by default: every route has a declared policy, and a route without one stops start-up."""

from __future__ import annotations

import pytest
from flask import Blueprint, Flask

from bastion.security.access import Access, check_every_view_has_policy, route_policies

# Every route of the application and who may call it. A new route must be added here, so
# its access policy is a reviewed decision, not an accident.
EXPECTED: dict[str, Access] = {
    "main.index": Access.PUBLIC,
    "main.security_txt": Access.PUBLIC,
    "main.csp_report": Access.PUBLIC,
    "health.healthz": Access.PUBLIC,
    "health.readyz": Access.PUBLIC,
    "metrics.export": Access.PUBLIC,
    "auth.login": Access.PUBLIC,
    "auth.logout": Access.SIGNED_IN,
    "setup.create_admin": Access.PUBLIC,
    "static": Access.PUBLIC,
}


@pytest.mark.asvs("V8.1.1", "V8.2.1", "V8.3.1")
def test_every_route_has_the_reviewed_policy(app: Flask) -> None:
    actual = {endpoint: policy for _, endpoint, policy in route_policies(app)}
    unknown = sorted(set(actual) - set(EXPECTED))
    assert not unknown, f"routes without a reviewed policy in EXPECTED: {unknown}"
    assert actual == {k: v for k, v in EXPECTED.items() if k in actual}
    assert set(EXPECTED) <= set(actual), "EXPECTED names routes that no longer exist"


@pytest.mark.asvs("V8.3.1")
def test_a_view_without_policy_stops_the_app(app: Flask) -> None:
    bp = Blueprint("careless", __name__)

    @bp.get("/careless")
    def careless() -> str:
        return "open door"

    fresh = Flask("probe")
    fresh.register_blueprint(bp)
    with pytest.raises(RuntimeError, match="careless.careless"):
        check_every_view_has_policy(fresh)


@pytest.mark.asvs("V8.2.1")
def test_signed_in_route_sends_anonymous_users_to_login(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/auth/logout")
    # CSRF refuses first (400) or the policy redirects; neither signs anything out.
    assert resp.status_code in (302, 400)
    from tests.support.auth import csrf_token

    token = csrf_token(client, "/auth/login")
    resp = client.post("/auth/logout", data={"csrf_token": token})
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/auth/login?next=")
