"""Mail over real SMTP (aiosmtpd) and to the development outbox."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.accounts import Outbox


def test_smtp_delivery_has_text_and_html_parts(make_app: Any, smtp_server: Any) -> None:
    app = make_app(MAIL_URL=smtp_server.url)
    with app.test_request_context():
        from bastion.mail import send_mail
        from tests.factories import UserFactory

        user = UserFactory(username="mailer", email="mailer@example.org")
        send_mail(user.email, "Confirm your email address", "confirm", user=user,
                  url="https://localhost/auth/confirm/x", hours=48)
    msg = smtp_server.mailbox.last_to("mailer@example.org")
    assert msg["Subject"] == "Confirm your email address"
    assert msg.get_body(preferencelist=("plain",)) is not None
    assert "https://localhost/auth/confirm/x" in msg.get_body(preferencelist=("html",)).get_content()


def test_unreachable_smtp_is_logged_not_raised(make_app: Any, free_port: Any, caplog: Any) -> None:
    app = make_app(MAIL_URL=f"smtp://127.0.0.1:{free_port()}")
    with app.test_request_context():
        from bastion.mail import send_mail
        from tests.factories import UserFactory

        user = UserFactory(username="nomail", email="nomail@example.org")
        send_mail(user.email, "Reset your password", "reset", user=user, url="u", minutes=60)
    assert any("mail not sent" in r.getMessage() for r in caplog.records)


def test_without_mail_url_messages_go_to_the_outbox_and_log(app: Any, caplog: Any) -> None:
    outbox = Outbox(app)
    with app.test_request_context():
        from bastion.mail import send_mail
        from tests.factories import UserFactory

        user = UserFactory(username="outboxed", email="outboxed@example.org")
        send_mail(user.email, "Reset your password", "reset", user=user,
                  url="https://localhost/auth/reset/tok", minutes=60)
    assert outbox.link("outboxed@example.org", "/auth/reset/") == "/auth/reset/tok"
    assert any(getattr(r, "body", "") for r in caplog.records)


def test_background_delivery_reaches_the_server(make_app: Any, smtp_server: Any) -> None:
    import time

    app = make_app(MAIL_URL=smtp_server.url, MAIL_BACKGROUND=True)
    with app.test_request_context():
        from bastion.mail import send_mail
        from tests.factories import UserFactory

        user = UserFactory(username="later", email="later@example.org")
        send_mail(user.email, "Reset your password", "reset", user=user, url="u", minutes=60)
    deadline = time.monotonic() + 5
    while not smtp_server.mailbox.to("later@example.org") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert smtp_server.mailbox.last_to("later@example.org")["Subject"] == "Reset your password"


@pytest.mark.asvs("V16.5.2", "V6.4.1")
def test_an_unusable_mail_url_never_breaks_the_page_or_tells_accounts_apart(
    make_app: Any, free_port: Any, caplog: Any
) -> None:
    """An SMTP password with an unencoded '#' (or a stray space after the port) makes the URL
    unparsable; the reset page must answer alike for known and unknown addresses. Start-up
    refuses such a URL (tests/test_config.py); the send path must survive one all the same."""
    from tests.factories import UserFactory
    from tests.support.accounts import post_form

    app = make_app()
    app.config["MAIL_URL"] = f"smtp://relay:pa#ss@127.0.0.1:{free_port()}"
    with app.app_context():
        UserFactory(username="known", email="known@example.org")
    client = app.test_client()
    known = post_form(client, "/auth/reset", {"email": "known@example.org"})
    unknown = post_form(client, "/auth/reset", {"email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 302
    assert known.headers["Location"] == unknown.headers["Location"]
    assert any("mail not sent" in r.getMessage() for r in caplog.records)
