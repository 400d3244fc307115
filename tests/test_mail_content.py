"""What every mail the site sends carries: its headers, its links and both of its parts.

Driven the way the messages really go out: through the pages, over a real SMTP server
(aiosmtpd, ``tests/support/mail.py``), with whatever Host headers a client can forge.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask

from tests.factories import UserFactory
from tests.support.accounts import Outbox, post_form

SENDER = "Bastion <no-reply@bastion.example.org>"
PUBLIC = "https://bastion.example.org"
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
URL = re.compile(r"https?://[^\s\"'<>]+")
TEMPLATES = sorted(
    p.stem for p in (Path(__file__).parents[1] / "bastion/templates/mail").glob("*.txt")
)


def _texts(msg: EmailMessage) -> tuple[str, str]:
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


def _assert_machine_made(msg: EmailMessage) -> None:
    """RFC 3834: responders (vacation, out of office) must not answer a machine's mail."""
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["From"] == SENDER
    # Random alone: no process id or clock reading of the machine that sent it.
    assert re.fullmatch(r"<[0-9a-f]{32}@bastion\.example\.org>", str(msg["Message-ID"]))
    assert parsedate_to_datetime(str(msg["Date"])).tzinfo is not None


@pytest.mark.asvs("V1.3.11")
def test_mails_sent_from_the_pages_are_marked_machine_made(
    make_app: Callable[..., Flask], smtp_server: Any
) -> None:
    """A reset link and a sign-up confirmation, as a visitor gets them over SMTP."""
    app = make_app(MAIL_URL=smtp_server.url, MAIL_SENDER=SENDER)
    with app.app_context():
        UserFactory(username="owner", email="owner@example.org")  # type: ignore[no-untyped-call]
    client = app.test_client()
    assert post_form(client, "/auth/reset", {"email": "owner@example.org"}).status_code == 302
    post_form(client, "/auth/register", {
        "username": "newcomer", "email": "newcomer@example.org",
        "password": "a long and unusual pass phrase", "confirm": "a long and unusual pass phrase",
    })
    got = [smtp_server.mailbox.last_to(a) for a in ("owner@example.org", "newcomer@example.org")]
    assert [str(m["Subject"]) for m in got] == ["Reset your password", "Confirm your email address"]
    for msg in got:
        _assert_machine_made(msg)
    assert got[0]["Message-ID"] != got[1]["Message-ID"]


def _context(template: str) -> dict[str, Any]:
    """Everything any mail template reads, links on the public origin."""
    return {
        "user": SimpleNamespace(username="owner"), "url": f"{PUBLIC}/auth/x/tok",
        "reset_url": f"{PUBLIC}/auth/reset", "account_url": f"{PUBLIC}/account/tokens",
        "minutes": 60, "hours": 48, "new_email": "new@example.org", "reason": "Called back",
        "must_enrol": True, "change": "enabled", "hint": "bst_abcd", "scopes": "read",
        "expires": "01 Jan 2027", "username": "owner", "deleted_at": "01 Jan 2027 at 10:00 UTC",
        "summary": SimpleNamespace(articles=1, comments=2, images=3),
        "contact": "security@bastion.example.org",
    }


@pytest.mark.asvs("V1.3.11")
@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_makes_a_marked_mail_whose_parts_carry_the_same_links(
    make_app: Callable[..., Flask], template: str
) -> None:
    """A reader of either part can do the same thing: no link only the HTML part has."""
    from bastion.mail import build_message

    app = make_app(MAIL_SENDER=SENDER)
    with app.test_request_context():
        msg = build_message("owner@example.org", "Subject", template, **_context(template))
    _assert_machine_made(msg)
    plain, html = _texts(msg)
    assert set(URL.findall(plain)) == set(URL.findall(html)), template
    assert "&amp;" not in plain and "&#" not in plain


def test_the_email_change_notice_gives_its_warning_a_paragraph_as_the_other_mails_do(
    make_app: Callable[..., Flask],
) -> None:
    """Its text part ran the warning on from the notice and broke it mid-sentence ("change
    your" / "password now:"); its HTML part, and the other mails, give it a paragraph."""
    from bastion.mail import build_message

    app = make_app(MAIL_SENDER=SENDER)
    with app.test_request_context():
        msg = build_message("owner@example.org", "Subject", "email_change_notice",
                            **_context("email_change_notice"))
    plain, _html = _texts(msg)
    assert "\n\nIf this was not you, change your password now:\n\n" in plain
    assert "Nothing changes until the new address is confirmed.\n" in plain


@pytest.mark.parametrize(("template", "said"), [
    ("password_changed", "The password of your Bastion account was just changed. Every session "
                         "was signed out, and your personal access tokens were revoked."),
    ("two_factor_reset", "Your authenticator app and your recovery codes no longer work. Every "
                         "session was signed out, and your API tokens were revoked."),
])
def test_the_security_notices_say_what_happened_in_sentences(
    make_app: Callable[..., Flask], template: str, said: str
) -> None:
    """Both parts ran three facts into one sentence ("was just changed, every session was
    signed out and your personal access tokens were revoked")."""
    from bastion.mail import build_message

    app = make_app(MAIL_SENDER=SENDER)
    with app.test_request_context():
        msg = build_message("owner@example.org", "Subject", template, **_context(template))
    plain, html = _texts(msg)
    assert said in " ".join(plain.split())
    assert said in " ".join(html.split())


def test_the_password_changed_notice_gives_its_warning_a_paragraph(
    make_app: Callable[..., Flask],
) -> None:
    """The text part ran the warning on from the facts; the other mails give it a paragraph."""
    from bastion.mail import build_message

    app = make_app(MAIL_SENDER=SENDER)
    with app.test_request_context():
        msg = build_message("owner@example.org", "Subject", "password_changed",
                            **_context("password_changed"))
    plain, _html = _texts(msg)
    assert ("revoked.\n\nIf this was not you, reset your password now and contact the site's "
            "administrators:\n\n") in plain


@pytest.mark.asvs("V6.4.3", "V4.1.3")
def test_a_forged_forwarded_host_never_reaches_a_mailed_link(
    make_app: Callable[..., Flask],
) -> None:
    """Behind one proxy, a client's X-Forwarded-Host is either refused by the host allow-list
    or, when admitted, still not the origin of the reset link: that is BASTION_PUBLIC_URL."""
    app = make_app(PUBLIC_URL=PUBLIC, PROXY_HOPS=1,
                   TRUSTED_HOSTS=["localhost", "internal.svc"])
    with app.app_context():
        UserFactory(username="owner", email="owner@example.org")  # type: ignore[no-untyped-call]
    outbox = Outbox(app)
    client = app.test_client()

    def ask(forwarded_host: str) -> int:
        headers = {"X-Forwarded-Host": forwarded_host, "Referer": f"https://{forwarded_host}/"}
        page = client.get("/auth/reset", headers=headers)
        if page.status_code != 200:
            return page.status_code
        token = CSRF.search(page.get_data(as_text=True))
        assert token is not None
        return client.post("/auth/reset", headers=headers, data={
            "csrf_token": token.group(1), "email": "owner@example.org"}).status_code

    assert ask("evil.example") == 400
    assert ask("internal.svc") == 302
    links = [link for m in outbox.to("owner@example.org") for link in URL.findall(_texts(m)[0])]
    assert links and all(link.startswith(f"{PUBLIC}/auth/reset/") for link in links), links


# Mailed links live as long as the mail says, not a second longer ------------------------
def _mailed_link(app: Flask, kind: str, issued_ago: float) -> tuple[str, str]:
    """The link and text of a confirmation (``confirm``) or email-change (``email``) mail
    whose token was signed ``issued_ago`` seconds ago."""
    import time

    from itsdangerous.timed import TimestampSigner

    from tests.support.account_fixtures import sign_in

    outbox = Outbox(app)
    client = app.test_client()
    issued = int(time.time() - issued_ago)
    with pytest.MonkeyPatch.context() as clock:
        # The session cookie and the form's CSRF token are signed and read under the same
        # clock: only the age of the mailed token matters.
        clock.setattr(TimestampSigner, "get_timestamp", lambda self: issued)
        if kind == "email":
            UserFactory(username="owner", email="owner@example.org")  # type: ignore[no-untyped-call]
            sign_in(client, "owner")
            resp = post_form(client, "/account", {"email": "new@example.org"},
                             action="/account/email")
        else:
            resp = post_form(client, "/auth/register", {
                "username": "newcomer", "email": "new@example.org",
                "password": "a long and unusual pass phrase",
                "confirm": "a long and unusual pass phrase"})
    assert resp.status_code == 302
    (msg,) = outbox.to("new@example.org")
    path = "/account/email/" if kind == "email" else "/auth/confirm/"
    return outbox.link("new@example.org", path), _texts(msg)[0]


@pytest.mark.asvs("V6.4.1")
@pytest.mark.parametrize(("kind", "setting"),
                         [("confirm", "CONFIRM_HOURS"), ("email", "EMAIL_CHANGE_HOURS")])
@pytest.mark.parametrize(("margin", "status"), [(-60, 200), (1, 404)], ids=["inside", "past"])
def test_a_mailed_link_works_for_the_hours_the_mail_states_and_no_longer(
    make_app: Callable[..., Flask], kind: str, setting: str, margin: int, status: int
) -> None:
    """The mail says "The link works for N hours" (reset links: tests/auth/test_reset.py)."""
    app = make_app(PUBLIC_URL=PUBLIC)
    hours = int(app.config[setting])
    with app.app_context():
        link, text = _mailed_link(app, kind, hours * 3600 + margin)
    assert f"works for {hours} hours" in text
    client = app.test_client()
    assert client.get(link).status_code == status
    if status == 404:
        assert post_form(client, "/auth/login", {}, action=link).status_code == 404


@pytest.mark.asvs("V1.2.1")
def test_words_typed_for_a_mail_stay_text_in_its_html_part(
    make_app: Callable[..., Flask], smtp_server: Any
) -> None:
    """The one free text mailed to someone else, the reason an admin gives for resetting a
    second factor, is shown as typed: markup in it never becomes a link or a form."""
    from bastion.admin import services as admin

    app = make_app(MAIL_URL=smtp_server.url, PUBLIC_URL=PUBLIC)
    planted = 'Called back. <a href="https://evil.example">Click here</a> & <b>sign in</b>'
    with app.test_request_context():
        boss = UserFactory(role_name="admin")  # type: ignore[no-untyped-call]
        target = UserFactory(role_name="admin", email="target@example.org")  # type: ignore[no-untyped-call]
        admin.reset_two_factor(boss, target, confirmation=target.username, reason=planted)
    plain, html = _texts(smtp_server.mailbox.last_to("target@example.org"))
    assert planted in plain
    assert ("Called back. &lt;a href=&#34;https://evil.example&#34;&gt;Click here&lt;/a&gt; "
            "&amp; &lt;b&gt;sign in&lt;/b&gt;") in html
    assert "evil.example" not in "".join(re.findall(r"<a [^>]*>", html))
