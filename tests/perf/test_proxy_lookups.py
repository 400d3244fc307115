"""Every-request hooks look Flask's context proxies up once, not at every use.

Each use of ``request``, ``g``, ``session``, ``current_app`` or ``current_user`` goes through
Werkzeug's ``LocalProxy`` (about 2 us on a slow host); the hooks that run for every request
made over a hundred such lookups per API call, a tenth of its CPU. The budgets are what an
answer costs now, with a little room: a hook that goes back to using the proxies at every
turn shows up here, not as a slower site months later.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug import local

from bastion.extensions import csrf, login_manager
from tests.api.conftest import Api
from tests.factories import ArticleFactory, UserFactory


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many proxy lookups happen (one counter, read by the test)."""
    count = [0]
    real = local._ProxyLookup.__get__

    def counting(self: Any, instance: Any, owner: Any = None) -> Any:
        if instance is not None:
            count[0] += 1
        return real(self, instance, owner)

    monkeypatch.setattr(local._ProxyLookup, "__get__", counting)
    return count


def _lookups_of(count: list[int], call: Any) -> int:
    call()  # warm: first-request work (caches, compiled templates) is not the steady state
    before = count[0]
    call()
    return count[0] - before


def test_an_api_list_call_stays_within_its_lookup_budget(
    client: FlaskClient, lookups: list[int]
) -> None:
    api = Api(client)
    ArticleFactory.create_batch(3)
    token = api.access_for(UserFactory())

    def call() -> None:
        assert api.call("GET", "/articles", token).status_code == 200

    assert _lookups_of(lookups, call) <= API_LIST_BUDGET


def test_an_anonymous_page_stays_within_its_lookup_budget(
    client: FlaskClient, lookups: list[int]
) -> None:
    ArticleFactory.create_batch(3)

    def call() -> None:
        assert client.get("/").status_code == 200

    assert _lookups_of(lookups, call) <= HOME_BUDGET


def test_a_get_does_not_ask_for_csrf_exemptions(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[bool] = []
    real = type(csrf)._is_exempt

    def counting(self: Any) -> bool:
        asked.append(True)
        return bool(real(self))

    monkeypatch.setattr(type(csrf), "_is_exempt", counting)
    assert client.get("/").status_code == 200
    assert asked == []
    # A POST still asks, and the API's exemption still holds (no token, no 400 for CSRF).
    resp = client.post("/api/v1/auth/token", json={"username": "nobody", "password": "x" * 12})
    assert asked and resp.status_code != 400


# Measured here when the hooks were changed: 121 and 127 lookups before, 77 and 83 after.
API_LIST_BUDGET = 85
HOME_BUDGET = 92


def test_pages_skip_flask_logins_identifier_while_session_protection_is_off(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []

    def identifier() -> str:
        made.append("hash")
        return "client"

    monkeypatch.setattr(login_manager, "_session_identifier_generator", identifier)
    assert client.get("/").status_code == 200
    assert made == []
    # Turned on, Flask-Login's own check runs again.
    monkeypatch.setitem(app.config, "SESSION_PROTECTION", "strong")
    assert client.get("/").status_code == 200
    assert made == ["hash"]
