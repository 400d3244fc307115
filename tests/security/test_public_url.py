"""Mailed links are built on BASTION_PUBLIC_URL, never on whatever Host was admitted."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask

from bastion import create_app
from bastion.config import ConfigError
from tests.factories import UserFactory
from tests.ops.test_settings import PRODUCTION, clean_env  # noqa: F401 - the fixture
from tests.support.accounts import Outbox
from tests.support.auth import csrf_token

LINK = re.compile(r"https?://\S+")


def _reset_links(app: Flask, host: str) -> list[str]:
    """Ask for a reset from ``host`` and return the links of the mail it sent."""
    user = UserFactory(email="owner@example.org")
    outbox = Outbox(app)
    client = app.test_client()
    token = csrf_token(client, "/auth/reset")
    resp = client.post("/auth/reset", data={"csrf_token": token, "email": user.email},
                       headers={"Host": host})
    assert resp.status_code == 302
    (msg,) = outbox.to(user.email)
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    return LINK.findall(body.get_content())


@pytest.mark.asvs("V6.4.3", "V4.1.3")
def test_mailed_links_use_the_public_origin_whatever_host_was_admitted(
    make_app: Callable[..., Flask],
) -> None:
    # "localhost" stands for an internal name on the allow-list (a service's, a pod's).
    app = make_app(PUBLIC_URL="https://bastion.example.org/")
    with app.app_context():
        links = _reset_links(app, "localhost")
    assert links
    assert all(link.startswith("https://bastion.example.org/") for link in links), links
    assert any(link.startswith("https://bastion.example.org/auth/reset/") for link in links)


def test_security_txt_names_the_public_origin(make_app: Callable[..., Flask]) -> None:
    app = make_app(PUBLIC_URL="https://bastion.example.org")
    body = app.test_client().get("/.well-known/security.txt").get_data(as_text=True)
    assert "Canonical: https://bastion.example.org/.well-known/security.txt\n" in body


def test_without_a_public_origin_links_follow_the_admitted_host(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()
    with app.app_context():
        links = _reset_links(app, "localhost")
    assert links and all(link.startswith("https://localhost/") for link in links), links


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("https://bastion.example.org/app", "must be an origin only"),
        ("https://bastion.example.org/?next=x", "must be an origin only"),
        ("https://admin@bastion.example.org", "must be an origin only"),
        ("https://bastion.example.org?", "must be an origin only"),
        ("https://bastion.example.org#", "must be an origin only"),
        ("ftp://bastion.example.org", "must look like https://host"),
        ("bastion.example.org", "must look like https://host"),
        ("https://bastion.example.org:port", "cannot be parsed"),
        # Links to elsewhere or nowhere, and a From header (no-reply@ the host) broken.
        ("https://bastion example.org", "host must be a DNS name"),
        ("https://bastion.example.org\\.evil.example", "host must be a DNS name"),
        ("https://bastion<x>.example.org", "host must be a DNS name"),
        ("https://bücher.example.org", "the xn-- form"),
        ("http://bastion.example.org", "must be an https:// address in production"),
    ],
)
def test_a_public_url_links_cannot_be_built_on_stops_start_up(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_app({**PRODUCTION, "METRICS_TOKEN": "t" * 34, "PUBLIC_URL": value})
    assert any(problem in p for p in info.value.problems), info.value.problems


@pytest.mark.usefixtures("clean_env")
def test_an_origin_with_a_port_is_accepted_and_its_slash_dropped() -> None:
    app = create_app({**PRODUCTION, "METRICS_TOKEN": "t" * 34,
                      "PUBLIC_URL": " https://bastion.example.org:8443/ "})
    assert app.config["PUBLIC_URL"] == "https://bastion.example.org:8443"
    app = create_app({**PRODUCTION, "METRICS_TOKEN": "t" * 34, "PUBLIC_URL": "https://[2001:db8::1]"})
    assert app.config["PUBLIC_URL"] == "https://[2001:db8::1]"
