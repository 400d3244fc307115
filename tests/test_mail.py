"""Mail over real SMTP (aiosmtpd) and to the development outbox."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask

from bastion import create_app
from bastion.api.keys import new_key_entry
from bastion.observability.logging import JSONFormatter
from tests.ops.test_settings import PRODUCTION, clean_env  # noqa: F401 - the fixture
from tests.support.accounts import Outbox
from tests.support.mail import LoopbackController, Mailbox
from tests.support.services import refused_port

# A password-reset link as a user receives it: whoever reads it can take the account over.
TOKEN = "IjQ2Ig.aGVsbG8tdGhpcy1pcy1hLXJlc2V0LXRva2Vu.c2lnbmF0dXJl"
LINK = f"https://bastion.example.org/auth/reset/{TOKEN}"


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


class _GreetingsKept(Mailbox):
    """Keeps the name each client greeted the relay with (EHLO) as well."""

    def __init__(self) -> None:
        super().__init__()
        self.greetings: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.greetings.append(str(session.host_name))
        return await super().handle_DATA(server, session, envelope)


def test_the_relay_is_greeted_with_the_sites_name_not_the_machines(make_app: Any) -> None:
    """Relays write the greeting into the Received header every recipient can read; by
    default smtplib greets with the machine's name or its private address (here
    ``[127.0.0.1]``), which tells readers how the site is run inside."""
    relay = _GreetingsKept()
    controller = LoopbackController(relay)
    controller.start()
    try:
        app = make_app(MAIL_URL=f"smtp://127.0.0.1:{controller.port}",
                       PUBLIC_URL="https://bastion.example.org")
        _send_reset_link(app)
    finally:
        controller.stop()
    assert relay.greetings == ["bastion.example.org"]
    assert str(relay.last_to("owner@example.org")["Message-ID"]).endswith("@bastion.example.org>")


def test_unreachable_smtp_is_logged_not_raised(make_app: Any, caplog: Any) -> None:
    app = make_app(MAIL_URL=f"smtp://127.0.0.1:{refused_port()}")
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
    deadline = time.monotonic() + 60  # a busy machine may take a while to run the thread
    while not smtp_server.mailbox.to("later@example.org") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert smtp_server.mailbox.last_to("later@example.org")["Subject"] == "Reset your password"


@pytest.mark.asvs("V16.5.2", "V6.4.1")
def test_an_unusable_mail_url_never_breaks_the_page_or_tells_accounts_apart(
    make_app: Any, caplog: Any
) -> None:
    """An SMTP password with an unencoded '#' (or a stray space after the port) makes the URL
    unparsable; the reset page must answer alike for known and unknown addresses. Start-up
    refuses such a URL (tests/test_config.py); the send path must survive one all the same."""
    from tests.factories import UserFactory
    from tests.support.accounts import post_form

    app = make_app()
    app.config["MAIL_URL"] = f"smtp://relay:pa#ss@127.0.0.1:{refused_port()}"
    with app.app_context():
        UserFactory(username="known", email="known@example.org")
    client = app.test_client()
    known = post_form(client, "/auth/reset", {"email": "known@example.org"})
    unknown = post_form(client, "/auth/reset", {"email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 302
    assert known.headers["Location"] == unknown.headers["Location"]
    assert any("mail not sent" in r.getMessage() for r in caplog.records)


@pytest.fixture
def bastion_log() -> Iterator[Callable[[], io.StringIO]]:
    """``listen()`` adds a handler writing the ``bastion`` log as production formats it
    (call it after create_app, which replaces the handlers); the logger's set-up is put back
    afterwards, so the apps of later tests log as before."""
    logger = logging.getLogger("bastion")
    saved = logger.handlers[:], logger.propagate, logger.level

    def listen() -> io.StringIO:
        out = io.StringIO()
        handler = logging.StreamHandler(out)
        handler.setFormatter(JSONFormatter())
        logger.addHandler(handler)
        return out

    yield listen
    logger.handlers[:], logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])


def _send_reset_link(app: Flask) -> None:
    from bastion.mail import send_mail

    with app.test_request_context():
        send_mail("owner@example.org", "Reset your password", "reset",
                  user=SimpleNamespace(username="owner"), url=LINK, minutes=60)


class _RefusingRelay:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        return "554 5.7.1 Message refused"


@pytest.mark.usefixtures("clean_env")
@pytest.mark.asvs("V16.2.5")
@pytest.mark.parametrize("relay", ["unreachable", "refusing", "setting gone"])
def test_production_never_writes_a_mailed_link_to_disk_or_the_log(
    tmp_path: Path,
    bastion_log: Callable[[], io.StringIO],
    capfd: pytest.CaptureFixture[str],
    relay: str,
) -> None:
    """Production, debug logging on: a relay that cannot be reached or refuses the message
    is logged as "mail not sent" with the template and the kind of error, never the body or
    its link; and should the mail URL be gone, nothing falls back to the outbox."""
    controller = None
    url = f"smtp://127.0.0.1:{refused_port()}"
    if relay == "refusing":
        controller = LoopbackController(_RefusingRelay())
        controller.start()
        url = f"smtp://127.0.0.1:{controller.port}"
    try:
        app = create_app({**PRODUCTION, "MAIL_URL": url,
                          "LOG_LEVEL": "DEBUG", "UPLOAD_DIR": str(tmp_path / "uploads"),
                          "OUTBOX_DIR": str(tmp_path / "outbox")})
        app.config["MAIL_BACKGROUND"] = False  # sent before the assertions read the log
        log = bastion_log()
        if relay == "setting gone":
            app.config["MAIL_URL"] = None
        _send_reset_link(app)
    finally:
        if controller is not None:
            controller.stop()
    captured = capfd.readouterr()
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == ["mail not sent"]
    assert lines[0]["template"] == "reset"
    for text in (log.getvalue(), captured.out, captured.err):
        assert TOKEN not in text and "Choose a new password" not in text
    assert not (tmp_path / "outbox").exists()


@pytest.mark.usefixtures("clean_env")
def test_development_still_writes_mail_to_the_outbox_and_the_log(
    tmp_path: Path, bastion_log: Callable[[], io.StringIO]
) -> None:
    """Without BASTION_MAIL_URL a developer follows links from instance/outbox or the log."""
    app = create_app({
        "ENV_NAME": "development",
        "SECRET_KEY": "development-" + "k" * 52,
        "JWT_KEYS": json.dumps([new_key_entry("dev-1")]),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}",
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "MAIL_BACKGROUND": False,
    })
    assert not app.config["MAIL_URL"]
    outbox = Outbox(app)
    log = bastion_log()
    _send_reset_link(app)
    assert outbox.link("owner@example.org", "/auth/reset/") == f"/auth/reset/{TOKEN}"
    (line,) = [json.loads(text) for text in log.getvalue().splitlines()]
    assert line["msg"] == "mail written to outbox"
    assert LINK in line["body"]
    # The .eml wraps a long link (quoted-printable): the README sends a developer to this line.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"`{line['msg']}`" in readme
