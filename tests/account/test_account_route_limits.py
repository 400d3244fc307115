"""Limits of signed-in account routes count the account too, not only the client address.

The attack: one account, many addresses (a botnet, a /48 of IPv6, a pool of proxies). A
limit keyed by the address alone gives each new address a fresh allowance, so the account
could have a confirmation link mailed to someone else's address as often as it has
addresses, or stream its whole data export again and again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from bastion.extensions import limiter
from tests.factories import UserFactory
from tests.support.accounts import Outbox, csrf_token
from tests.support.roles import client_for

pytestmark = [pytest.mark.redis]

NAVIGATE = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Dest": "document"}


def _app(make_app: Callable[..., Flask], redis_url: str) -> Flask:
    prefix = os.environ["BASTION_TEST_REDIS_PREFIX"]
    app = make_app(backend="postgresql", REDIS_URL=redis_url, REDIS_PREFIX=prefix,
                   RATELIMIT_KEY_PREFIX=prefix, MAIL_BACKGROUND=False)
    with app.app_context():
        limiter.reset()
    return app


def _from(client: Any, address: str) -> Any:
    client.environ_base["REMOTE_ADDR"] = address
    return client


@pytest.mark.asvs("V2.4.1", "V2.3.2")
def test_one_account_cannot_mail_an_address_once_per_client_address(
    make_app: Callable[..., Flask], redis_url: str
) -> None:
    app = _app(make_app, redis_url)
    with app.app_context():
        outbox = Outbox(app)
        client = client_for(app, UserFactory(username="mallory", email="mallory@example.org"))
        statuses = []
        for n in range(8):  # a new address for every request, each within its own limits
            _from(client, f"198.51.100.{n + 1}")
            token = csrf_token(client, "/account")
            statuses.append(client.post("/account/email", data={
                "csrf_token": token, "email": "victim@example.net"}).status_code)
    assert statuses[:5] == [302] * 5
    assert statuses[5:] == [429] * 3
    assert len(outbox.to("victim@example.net")) == 5


@pytest.mark.asvs("V2.4.1", "V2.3.2")
def test_one_account_cannot_export_once_per_client_address(
    make_app: Callable[..., Flask], redis_url: str
) -> None:
    app = _app(make_app, redis_url)
    with app.app_context():
        client = client_for(app, UserFactory(username="mallory", email="mallory@example.org"))
        statuses = [
            _from(client, f"2001:db8:{n + 1}::1").get("/account/export", headers=NAVIGATE)
            .status_code
            for n in range(7)
        ]
    assert statuses == [200] * 5 + [429] * 2


@pytest.mark.asvs("V2.3.2")
def test_the_address_limit_still_counts_many_accounts_of_one_client(
    make_app: Callable[..., Flask], redis_url: str
) -> None:
    app = _app(make_app, redis_url)
    with app.app_context():
        statuses = []
        for n in range(7):  # a new account each time, all from one address
            client = _from(client_for(app, UserFactory(username=f"sock{n}")), "192.0.2.9")
            statuses.append(client.get("/account/export", headers=NAVIGATE).status_code)
    assert statuses == [200] * 5 + [429] * 2
