"""Remembered limit resolution gives Flask-Limiter's own answer, and follows every change."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask_limiter._manager import LimitManager
from flask_limiter.constants import ExemptionScope
from flask_limiter.util import get_qualified_name

from bastion.extensions import limiter
from bastion.security.ratelimit_resolution import CachedLimitManager, registrations


def _plain(manager: LimitManager) -> LimitManager:
    """Flask-Limiter's own manager over the same registrations, remembering nothing."""
    plain = LimitManager(**registrations(manager))
    plain._endpoint_hints = manager._endpoint_hints
    return plain


def _resolve_both(app: Flask, endpoint: str, blueprint: str | None, **flags: bool) -> tuple:
    manager = limiter.limit_manager
    name = get_qualified_name(app.view_functions[endpoint])
    args = (app, endpoint, blueprint, name, flags["in_middleware"], flags["marked"])
    cached = manager.resolve_limits(*args), manager.exemption_scope(app, endpoint, blueprint)
    plain = _plain(manager)
    fresh = plain.resolve_limits(*args), plain.exemption_scope(app, endpoint, blueprint)
    return cached, fresh


def test_the_limiter_uses_the_remembering_manager() -> None:
    assert isinstance(limiter.limit_manager, CachedLimitManager)


@pytest.mark.asvs("V2.4.1")
def test_every_view_gets_exactly_flask_limiters_limits(app: Flask) -> None:
    """Every view of the app and each of its methods, before and in the view, marked or
    not; the methods are asked in one order and then the other, since a limit declared for
    POST alone leaves a GET to the defaults."""
    seen = 0
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.rpartition(".")[0] or None
        methods = sorted(rule.methods or ())
        for method in [*methods, *reversed(methods)]:
            with app.test_request_context(method=method):
                for in_middleware in (True, False):
                    for marked in (True, False):
                        cached, fresh = _resolve_both(
                            app, rule.endpoint, blueprint, in_middleware=in_middleware, marked=marked
                        )
                        assert cached == fresh, (rule.endpoint, method)
                        seen += sum(len(limits) for limits in fresh[0])
    assert seen > 0  # the comparison covered real limits, not only empty lists


@pytest.mark.asvs("V2.4.1")
def test_a_limit_read_from_the_settings_applies_as_soon_as_it_changes(
    make_app: Callable[..., Flask],
) -> None:
    """The API's limit is a callable reading API_RATE_LIMIT: its text is part of the key."""
    app = make_app(API_RATE_LIMIT="100 per minute")
    client = app.test_client()
    assert [client.get("/api/v1/me").status_code for _ in range(3)] == [401, 401, 401]
    app.config["API_RATE_LIMIT"] = "3 per minute"  # a new limit, counted afresh
    assert [client.get("/api/v1/me").status_code for _ in range(4)] == [401, 401, 401, 429]


@pytest.mark.asvs("V2.4.1")
def test_a_limit_declared_later_empties_the_cache(app: Flask) -> None:
    """Registrations go through the manager's methods, each of which forgets every answer."""
    manager = limiter.limit_manager
    endpoint = "main.index"
    name = get_qualified_name(app.view_functions[endpoint])
    with app.test_request_context():
        before, _ = _resolve_both(app, endpoint, "main", in_middleware=True, marked=False)
        assert any(before[0])
        manager.add_route_exemption(name, ExemptionScope.DEFAULT | ExemptionScope.APPLICATION)
        try:
            after, fresh = _resolve_both(app, endpoint, "main", in_middleware=True, marked=False)
            assert after == fresh
            assert not any(after[0])
        finally:
            del manager._route_exemptions[name]
            manager.add_route_exemption("nothing.here", ExemptionScope.NONE)
            del manager._route_exemptions["nothing.here"]
        again, _ = _resolve_both(app, endpoint, "main", in_middleware=True, marked=False)
        assert again == before
