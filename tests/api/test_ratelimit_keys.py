"""Whom a rate limit counts: an IPv6 client cannot take a new bucket per address of its /64."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from bastion.extensions import limiter
from bastion.security.ratelimit_keys import client_key


def _token_attempts(app: Flask, addresses: list[str], *, proxied: bool = False) -> list[int]:
    """Token requests from each of ``addresses``: the peer's own, or (``proxied``) as the one
    trusted proxy forwards them in X-Forwarded-For."""
    client = app.test_client()
    return [
        client.post(
            "/api/v1/auth/token",
            # A different account each time: the per-account throttle stays out of it.
            json={"username": f"nobody{i}", "password": "wrong password"},
            headers={"X-Forwarded-For": address} if proxied else {},
            environ_base={"REMOTE_ADDR": "10.0.0.5" if proxied else address},
        ).status_code
        for i, address in enumerate(addresses)
    ]


@pytest.mark.asvs("V6.3.1", "V2.4.1", "V15.3.4")
def test_rotating_addresses_within_one_ipv6_64_share_one_bucket(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(API_TOKEN_RATE_LIMIT="3 per minute")
    with app.app_context():
        limiter.reset()
    # One host with its /64: a fresh address for every guess (privacy extensions do it).
    statuses = _token_attempts(app, [f"2001:db8:0:7::{i + 1:x}" for i in range(6)])
    assert statuses[:3] == [401, 401, 401]
    assert statuses[3:] == [429, 429, 429]
    # Another /64 is another client, and IPv4 clients are untouched.
    assert _token_attempts(app, ["2001:db8:0:8::1", "192.0.2.10"]) == [401, 401]


@pytest.mark.asvs("V15.3.4")
def test_client_key_groups_ipv6_by_64_and_keeps_ipv4() -> None:
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert (
        client_key("2001:db8:0:7:aaaa::1")
        == client_key("2001:DB8:0:7::ffff")
        == ("2001:db8:0:7::/64")
    )
    assert client_key("2001:db8:0:8::1") != client_key("2001:db8:0:7::1")
    # A dual-stack socket's IPv4-mapped address is that IPv4 client, not a shared ::ffff:0/64.
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("::ffff:192.0.2.1") != client_key("::ffff:192.0.2.2")
    assert client_key("not-an-address:x") == "not-an-address:x"


@pytest.mark.asvs("V2.4.1", "V15.3.4")
@pytest.mark.parametrize(
    "forwarded",
    [
        [f"203.0.113.7:{port}" for port in range(1, 7)],
        # The same /64, from another address and port on each connection.
        [f"[2001:db8::{i}]:{51230 + i}" for i in range(1, 7)],
    ],
    ids=["ipv4", "ipv6"],
)
def test_a_proxy_that_forwards_the_clients_port_still_counts_one_client(
    make_app: Callable[..., Flask], forwarded: list[str]
) -> None:
    # Azure App Service and some load balancers write the client's port into
    # X-Forwarded-For: a new one on every connection must not be a new bucket.
    app = make_app(PROXY_HOPS=1, API_TOKEN_RATE_LIMIT="3 per minute")
    with app.app_context():
        limiter.reset()
    statuses = _token_attempts(app, forwarded, proxied=True)
    assert statuses[:3] == [401, 401, 401]
    assert statuses[3:] == [429, 429, 429]
    # Another client behind the same proxy keeps its own bucket.
    assert _token_attempts(app, ["203.0.113.8:1", "[2001:db8:0:1::1]:1"], proxied=True) == [401, 401]


@pytest.mark.asvs("V15.3.4")
@pytest.mark.parametrize(
    ("forwarded", "key"),
    [
        ("203.0.113.7:51234", "203.0.113.7"),
        ("203.0.113.7:1", "203.0.113.7"),
        ("[2001:db8::1]:51234", "2001:db8::/64"),
        ("[2001:DB8::2]:1", "2001:db8::/64"),
        ("[2001:db8::1]", "2001:db8::/64"),  # bracketed without a port (RFC 7239's form)
        ("[::ffff:203.0.113.7]:443", "203.0.113.7"),
        ("[fe80::1%eth0]:80", "fe80::/64"),
        # Unbracketed with a port that is no hex group: the address before it.
        ("2001:db8:0:7::1:51234", "2001:db8:0:7::/64"),
        ("2001:db8:0:7:1:2:3:4:8080", "2001:db8:0:7::/64"),
    ],
)
def test_client_key_drops_the_port_a_proxy_forwards(forwarded: str, key: str) -> None:
    assert client_key(forwarded) == key


@pytest.mark.asvs("V15.3.4")
@pytest.mark.parametrize(
    "peer", ["not-an-address:x", "unix:/run/bastion.sock", "[not-an-address]:1", "[]:1", ":1"]
)
def test_client_key_keeps_what_is_no_address(peer: str) -> None:
    assert client_key(peer) == peer


@pytest.mark.asvs("V2.4.1", "V15.3.4")
def test_an_unbracketed_port_in_place_of_a_zero_group_is_no_other_64() -> None:
    """``2001:db8::4:5:6:7`` with port 1234, unbracketed, parses as 2001:db8:0:4:5:6:7:1234:
    the port took the place of a zero group of the /64, so a host of 2001:db8::/64 took a
    bucket of another /64 for each first group of its addresses (a source port below 10000
    is the host's to choose)."""
    own = client_key("2001:db8::4:5:6:7")
    assert own == "2001:db8::/64"
    rotated = {client_key(f"2001:db8::{first:x}:5:6:7:{port}")
               for first in range(1, 40) for port in (1234, 80, 9999)}  # fmt: skip
    assert rotated == {own}
    # Written as RFC 5952 writes it, with no port: the whole address, never cut.
    assert client_key("2001:db8:0:4:5:6:7:80") == "2001:db8:0:4::/64"
    assert client_key("2001:db8::1:8080") == "2001:db8::/64"
