"""X-Forwarded-* is believed only from the configured number of proxies."""

from __future__ import annotations

import pytest


def _seen_ip(app, forwarded: str = "203.0.113.9, 198.51.100.7") -> str:  # type: ignore[no-untyped-def]
    client = app.test_client()
    client.post(
        "/csp-report",
        json={"csp-report": {"violated-directive": "script-src"}},
        headers={"X-Forwarded-For": forwarded},
        environ_base={"REMOTE_ADDR": "10.0.0.5"},
    )
    from bastion.extensions import db
    from bastion.models import AuditEvent

    with app.app_context():
        return db.session.query(AuditEvent.ip).order_by(AuditEvent.id.desc()).first()[0]


@pytest.mark.asvs("V4.1.3", "V16.2.1", "V15.3.4")
def test_spoofed_forwarded_for_is_ignored_without_proxy_hops(make_app) -> None:  # type: ignore[no-untyped-def]
    assert _seen_ip(make_app(PROXY_HOPS=0)) == "10.0.0.5"


@pytest.mark.asvs("V4.1.3", "V15.3.4")
def test_one_trusted_hop_takes_only_the_last_address(make_app) -> None:  # type: ignore[no-untyped-def]
    # The proxy appended the address it saw (198.51.100.7); what the client wrote before
    # it (203.0.113.9) is not trusted.
    assert _seen_ip(make_app(PROXY_HOPS=1)) == "198.51.100.7"


@pytest.mark.asvs("V15.3.4", "V2.4.1")
def test_rate_limit_buckets_follow_the_real_client(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(PROXY_HOPS=0)
    client = app.test_client()
    statuses = []
    for i in range(65):
        resp = client.post(
            "/csp-report",
            json={"csp-report": {}},
            headers={"X-Forwarded-For": f"192.0.2.{i}"},
        )
        statuses.append(resp.status_code)
    # Rotating a forged header does not give a fresh bucket.
    assert statuses[-1] == 429
    assert int(resp.headers["Retry-After"]) >= 1


# Some proxies write the client's port into X-Forwarded-For (Azure App Service, some load
# balancers); one port per connection.
WITH_PORTS = [
    ("203.0.113.7:51234", "203.0.113.7"),
    ("[2001:db8:85a3:8d3:1319:8a2e:370:7348]:51234", "2001:db8:85a3:8d3:1319:8a2e:370:7348"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("2001:db8:0:7::1:51234", "2001:db8:0:7::1"),
    ("2001:db8::4:5:6:7:1234", "2001:db8::4:5:6:7"),  # the port in a zero group's place
]


@pytest.mark.asvs("V16.2.1", "V15.3.4")
@pytest.mark.parametrize(("forwarded", "address"), WITH_PORTS)
def test_the_audit_trail_keeps_the_clients_address_without_its_port(  # type: ignore[no-untyped-def]
    make_app, forwarded: str, address: str
) -> None:
    """With the port each connection's row named a different address, and a bracketed
    IPv6 address with its port (47 characters) was cut short by the 45-character column."""
    assert _seen_ip(make_app(PROXY_HOPS=1), f"198.51.100.1, {forwarded}") == address


@pytest.mark.asvs("V16.2.1", "V7.5.2")
@pytest.mark.parametrize(("forwarded", "address"), WITH_PORTS[:2])
def test_a_sessions_address_is_the_clients_without_its_port(  # type: ignore[no-untyped-def]
    make_app, forwarded: str, address: str
) -> None:
    from bastion.extensions import db
    from bastion.models import UserSession
    from tests.factories import UserFactory
    from tests.support.account_fixtures import sign_in

    app = make_app(PROXY_HOPS=1)
    with app.app_context():
        UserFactory(username="alice")
        client = app.test_client()
        client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded
        assert sign_in(client, "alice").status_code == 302
        assert db.session.scalars(db.select(UserSession.ip)).all() == [address]
