"""The Host allow-list ignores the case of a host name and nothing else.

Host names are case-insensitive (RFC 9110 4.2.3): ``Host: LOCALHOST`` is ``localhost``. Every
other way a Host header can differ from an allowed name (another name, a trailing dot, a bad
port, IPv6 brackets, a forwarded host from a client when no proxy is trusted) is refused as
before, and what the site builds from the host carries the lower-case name only.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask

from tests.factories import UserFactory
from tests.support.accounts import Outbox

HOSTS = ["localhost", "127.0.0.1"]
URL = re.compile(r"https?://[^\s\"'<>]+")


@pytest.mark.asvs("V2.2.1", "V1.1.1")
@pytest.mark.parametrize("host", ["LOCALHOST", "LocalHost", "LOCALHOST:5000", "localHOST:443"])
def test_an_allowed_host_in_capitals_is_served(make_app: Callable[..., Flask], host: str) -> None:
    client = make_app(TRUSTED_HOSTS=HOSTS).test_client()
    assert client.get("/healthz", headers={"Host": host}).status_code == 200
    assert client.get("/", headers={"Host": host}).status_code == 200


@pytest.mark.asvs("V2.2.1", "V1.1.1")
@pytest.mark.parametrize("host", [
    "evil.example", "EVIL.EXAMPLE", "localhost.", "LOCALHOST.", "localhost.evil.example",
    "LOCALHOST.EVIL.EXAMPLE", "evil-localhost", "localhost:0", "LOCALHOST:99999",
    "localhost:abc", "[::1]", "[::1]:80", "127.0.0.1.", "LOCALHOST\u212a", "localhost evil",
])
def test_a_host_off_the_list_is_still_refused(make_app: Callable[..., Flask], host: str) -> None:
    resp = make_app(TRUSTED_HOSTS=HOSTS).test_client().get("/healthz", headers={"Host": host})
    assert resp.status_code == 400
    assert host.lower() not in resp.get_data(as_text=True).lower()


@pytest.mark.asvs("V4.1.3", "V2.2.1")
def test_forwarded_hosts_are_judged_as_before(make_app: Callable[..., Flask]) -> None:
    # No proxy trusted: X-Forwarded-Host is ignored, whichever way round the names are.
    direct = make_app(TRUSTED_HOSTS=HOSTS).test_client()
    assert direct.get("/healthz", headers={"Host": "EVIL.EXAMPLE",
                                           "X-Forwarded-Host": "localhost"}).status_code == 400
    assert direct.get("/healthz", headers={"Host": "LOCALHOST",
                                           "X-Forwarded-Host": "evil.example"}).status_code == 200
    # One proxy: its X-Forwarded-Host is the host, in capitals or not; a name off the list
    # is refused whatever Host the proxy itself was sent.
    proxied = make_app(TRUSTED_HOSTS=HOSTS, PROXY_HOPS=1).test_client()
    for forwarded in ("EVIL.EXAMPLE", "evil.example", "LOCALHOST.", "localhost, evil.example"):
        resp = proxied.get("/healthz", headers={"Host": "localhost", "X-Forwarded-Host": forwarded})
        assert resp.status_code == 400, forwarded
    assert proxied.get("/healthz", headers={"Host": "evil.example",
                                            "X-Forwarded-Host": "LOCALHOST"}).status_code == 200


@pytest.mark.asvs("V4.1.3")
def test_the_https_redirect_names_the_host_in_lower_case(make_app: Callable[..., Flask]) -> None:
    app = make_app(TRUSTED_HOSTS=HOSTS, FORCE_HTTPS=True, PROXY_HOPS=1)
    for headers in ({"Host": "LocalHost"}, {"Host": "localhost", "X-Forwarded-Host": "LOCALHOST"}):
        resp = app.test_client().get("/auth/login?next=/x", headers=headers,
                                     base_url="http://localhost")
        assert resp.status_code == 308
        assert resp.headers["Location"] == "https://localhost/auth/login?next=/x"


@pytest.mark.asvs("V6.4.3")
@pytest.mark.parametrize("public_url", [None, "https://bastion.example.org"])
def test_mailed_links_never_carry_the_clients_spelling(
    make_app: Callable[..., Flask], public_url: str | None
) -> None:
    """With BASTION_PUBLIC_URL (required in production) links are built on it; without it
    (development) on the request's host, in lower case."""
    # The test client files cookies under the spelling of its Host header, so the CSRF
    # cookie would not come back; the token check is not what is tested here.
    app = make_app(TRUSTED_HOSTS=HOSTS, PUBLIC_URL=public_url, WTF_CSRF_ENABLED=False)
    with app.app_context():
        UserFactory(username="owner", email="owner@example.org")  # type: ignore[no-untyped-call]
    outbox = Outbox(app)
    client = app.test_client()
    resp = client.post("/auth/reset", headers={"Host": "LoCaLhOsT"},
                       data={"email": "owner@example.org"})
    assert resp.status_code == 302
    links = [link for m in outbox.to("owner@example.org")
             for link in URL.findall(m.get_body(preferencelist=("plain",)).get_content())]  # type: ignore[union-attr]
    origin = public_url or "https://localhost"  # PREFERRED_URL_SCHEME
    assert links and all(link.startswith(f"{origin}/auth/reset/") for link in links), links
