"""Only real static-file routes are public by nature, not any view that is named ``static``.

``policy_of`` took every endpoint ending in ``.static`` for a blueprint's static files and
answered "public" before looking at the view: a view function named ``static`` in any
blueprint (a members-only "static pages" view, say) was served to anyone whatever its
decorator said, and one without a decorator passed the start-up check that is meant to
stop an undeclared route.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Blueprint, Flask

from bastion.security.access import Access, check_every_view_has_policy, login_required, policy_of


def _members_blueprint(*, declared: bool) -> Blueprint:
    bp = Blueprint("members", __name__, url_prefix="/members")

    def static() -> str:  # the name is the whole trick
        return "members only"

    bp.add_url_rule("/pages", view_func=login_required(static) if declared else static)
    return bp


@pytest.mark.asvs("V8.3.1")
def test_a_view_named_static_keeps_its_declared_policy() -> None:
    probe = Flask("probe")
    probe.register_blueprint(_members_blueprint(declared=True))
    assert policy_of(probe, "members.static") is Access.SIGNED_IN


@pytest.mark.asvs("V8.3.1")
def test_an_undeclared_view_named_static_stops_the_app() -> None:
    probe = Flask("probe")
    probe.register_blueprint(_members_blueprint(declared=False))
    with pytest.raises(RuntimeError, match="members.static"):
        check_every_view_has_policy(probe)


@pytest.mark.asvs("V8.3.1")
def test_real_static_routes_stay_public(app: Flask, tmp_path: Path) -> None:
    assert policy_of(app, "static") is Access.PUBLIC
    probe = Flask("probe")
    probe.register_blueprint(Blueprint("theme", __name__, static_folder=str(tmp_path),
                                       url_prefix="/theme"))
    assert policy_of(probe, "theme.static") is Access.PUBLIC
    check_every_view_has_policy(probe)
