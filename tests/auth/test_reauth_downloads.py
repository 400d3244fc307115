"""A password never leads straight into a download: the user lands on the page that offers
it and starts it there, and the password page says what the password is for.

The attack: a link such as ``/auth/reauth?next=/account/export``, sent to a signed-in
victim. The form's answer is a same-origin navigation, so the export's Fetch Metadata
check (``refuse_unless_requested``) took the redirect for the user's own click, and the
file was saved the moment the password was typed.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import quote

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bastion.extensions import db
from bastion.models import AuditEvent
from tests.factories import PASSWORD, TOTP_SECRET, UserFactory
from tests.support.account_fixtures import sign_in
from tests.support.auth import csrf_token
from tests.support.roles import age_reauthentication, client_for

READY = "/account?export=ready#your-data"
EXPORT = "/account/export"
# A top-level navigation as a browser sends it: the victim follows another site's link...
CROSS_SITE = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
              "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1"}
# ...then sends the site's own form, and the browser follows the answer's redirects.
SAME_ORIGIN = {**CROSS_SITE, "Sec-Fetch-Site": "same-origin"}
DOWNLOAD_WORDING = "Confirm your password to download your data."
GENERIC_WORDING = "This change needs a recent check of your password"
NEXT_RE = re.compile(r'name="next" type="hidden" value="([^"]*)"')


def _audited(event: str) -> int:
    return int(db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.event == event)
    ) or 0)


def _text(resp: Any) -> str:
    """The page's text with white space runs made single spaces, as a reader sees it."""
    return " ".join(resp.get_data(as_text=True).split())


def _follow(client: FlaskClient, resp: Any) -> Any:
    """Follow redirects as the browser would (same-origin navigations); no answer on the
    way may be a file."""
    for _ in range(6):
        assert "Content-Disposition" not in resp.headers, resp.headers
        if resp.status_code not in (301, 302, 303, 307, 308):
            return resp
        resp = client.get(resp.headers["Location"], headers=SAME_ORIGIN)
    raise AssertionError("too many redirects")


def _reauth(client: FlaskClient, link: str, **typed: str) -> tuple[Any, Any]:
    """Open ``link`` from another site, type the password (and code): the page, and the
    form's answer."""
    page = client.get(link, headers=CROSS_SITE)
    assert page.status_code == 200
    found = NEXT_RE.search(page.get_data(as_text=True))
    nxt = html.unescape(found.group(1)) if found else ""
    token = csrf_token(client, link)
    done = client.post("/auth/reauth", headers=SAME_ORIGIN, data={
        "csrf_token": token, "next": nxt, "password": PASSWORD, **typed})
    return page, done


@pytest.mark.asvs("V3.5.3")
@pytest.mark.parametrize("target", [
    EXPORT,
    "/account//export",  # the router merges the slashes
    "/account/%65xport",  # percent-encoded: the server decodes it
    f"{EXPORT}?format=json",
    f"/auth/login?next={quote(EXPORT, safe='')}",  # a signed-in sign-in page passes it on
])
@pytest.mark.parametrize("stale", [False, True])
def test_a_hand_made_reauth_link_lands_on_the_page_offering_the_export(
    app: Flask, target: str, stale: bool
) -> None:
    """After the password the victim is on the account page's "Your data" section, as in
    the flow the site starts itself; nothing is downloaded or audited as exported until
    they choose the download there."""
    user = UserFactory()
    client = client_for(app, user)
    if stale:
        age_reauthentication(user, minutes=11)

    _, done = _reauth(client, f"/auth/reauth?next={quote(target, safe='')}")

    landed = _follow(client, done)
    assert landed.status_code == 200 and landed.request.full_path == "/account?export=ready"
    assert 'id="your-data"' in landed.get_data(as_text=True)
    assert "Confirmed. Choose Download your data to get the file." in _text(landed)
    assert _audited("account.exported") == 0 and _audited("reauth") == 1
    chosen = client.get(EXPORT, headers=SAME_ORIGIN)  # the user's own click
    assert chosen.status_code == 200 and "attachment" in chosen.headers["Content-Disposition"]
    assert _audited("account.exported") == 1


def _as_a_browser_requests(location: str) -> str:
    """The path a browser asks for when it follows ``location``: dot segments removed, with
    ``%2e`` read as a dot (WHATWG URL), which the test client leaves as they are."""
    cut = min((i for i in (location.find("?"), location.find("#")) if i >= 0),
              default=len(location))
    segments, kept = location[:cut].split("/")[1:], []
    for i, segment in enumerate(segments):
        name = segment.lower().replace("%2e", ".")
        if name == "..":
            kept = kept[:-1]
        if name in (".", ".."):
            if i == len(segments) - 1:
                kept.append("")
            continue
        kept.append(segment)
    return "/" + "/".join(kept) + location[cut:]


@pytest.mark.asvs("V3.5.3")
@pytest.mark.parametrize("target", [
    "/./account/export",
    "/account/./export",
    "/x/../account/export",
    "/account/%2e/export",  # a browser reads %2e in a path as a dot
    "/account/.%2E/account/export",
])
def test_dot_segments_do_not_hide_the_export_from_a_hand_made_reauth_link(
    app: Flask, target: str
) -> None:
    """Such a path names no route here, so it was not recognised as the export and was
    handed on as it is; the browser following the redirect resolves the dots and asks
    for /account/export, a same-origin navigation: the file was saved at the password."""
    client = client_for(app, UserFactory())

    _, done = _reauth(client, f"/auth/reauth?next={quote(target, safe='')}")

    assert done.status_code == 302
    opened = []
    while done.status_code in (301, 302, 303, 307, 308) and len(opened) < 6:
        opened.append(_as_a_browser_requests(done.headers["Location"]))
        done = client.get(opened[-1], headers=SAME_ORIGIN)
        done.close()  # a streamed file, if one came, ends here and not after the test
    assert "Content-Disposition" not in done.headers, opened
    assert done.status_code == 200
    assert _audited("account.exported") == 0 and _audited("reauth") == 1


@pytest.mark.asvs("V3.5.3")
def test_signing_in_on_the_way_to_the_export_lands_on_the_page_offering_it(app: Flask) -> None:
    """The same link to the sign-in page, sent to someone signed out: a sign-in is as
    fresh as a re-authentication, so it must not lead into the download either."""
    UserFactory(username="sam", email="sam@example.org")
    client = app.test_client()
    link = f"/auth/login?next={quote(EXPORT, safe='')}"
    assert client.get(link, headers=CROSS_SITE).status_code == 200
    token = csrf_token(client, link)

    done = client.post("/auth/login", headers=SAME_ORIGIN, data={
        "csrf_token": token, "username": "sam", "password": PASSWORD, "next": EXPORT})

    assert done.status_code == 302 and done.headers["Location"] == READY
    assert _follow(client, done).status_code == 200
    assert _audited("account.exported") == 0


@pytest.mark.asvs("V3.5.3")
def test_the_second_factor_on_the_way_to_the_export_lands_on_the_page_offering_it(
    app: Flask,
) -> None:
    UserFactory(username="tess", email="tess@example.org", two_factor=True)
    client = app.test_client()
    assert sign_in(client, "tess", next=EXPORT).headers["Location"] == "/auth/2fa"
    token = csrf_token(client, "/auth/2fa")

    done = client.post("/auth/2fa", headers=SAME_ORIGIN, data={
        "csrf_token": token, "code": pyotp.TOTP(TOTP_SECRET).now()})

    assert done.status_code == 302 and done.headers["Location"] == READY
    assert _follow(client, done).status_code == 200
    assert _audited("account.exported") == 0


@pytest.mark.asvs("V3.5.3")
def test_a_hand_made_reauth_link_lands_on_the_audit_log_not_in_its_export(app: Flask) -> None:
    """The audit export needs no re-authentication, but the same link works on an admin:
    after the password (and code) they are on the audit log with the export's filters,
    where Export CSV is theirs to choose."""
    admin = UserFactory(role_name="admin")
    client = client_for(app, admin)
    target = "/admin/audit.csv?event=login.success"

    page, done = _reauth(client, f"/auth/reauth?next={quote(target, safe='')}",
                         code=pyotp.TOTP(TOTP_SECRET).now())

    assert ("Confirm your password and your authentication code to export the audit log."
            in _text(page))
    assert done.status_code == 302 and done.headers["Location"] == "/admin/audit?event=login.success"
    assert _follow(client, done).status_code == 200
    assert _audited("audit.exported") == 0


def test_the_reauth_page_says_when_the_password_is_for_a_download(app: Flask) -> None:
    """Sent there by the download link (or any link to it), the page names the download
    and says it starts from the page that offers it; for anything else it keeps the
    general wording. A wrong password keeps the wording on the page shown again."""
    user = UserFactory()
    client = client_for(app, user)
    age_reauthentication(user, minutes=11)
    sent = client.get(EXPORT, headers=SAME_ORIGIN)
    assert sent.status_code == 302 and sent.headers["Location"].startswith("/auth/reauth?next=")

    page = _text(client.get(sent.headers["Location"], headers=SAME_ORIGIN))
    assert DOWNLOAD_WORDING in page and GENERIC_WORDING not in page
    assert "the download starts when you choose it there" in page

    wrong = client.post("/auth/reauth", data={"csrf_token": csrf_token(client, "/account"),
                                              "next": EXPORT, "password": "not it at all"})
    assert wrong.status_code == 200 and DOWNLOAD_WORDING in _text(wrong)

    for other in ("/auth/reauth", "/auth/reauth?next=/account/email",
                  "/auth/reauth?next=/account%3Fexport%3Dready",
                  "/auth/reauth?next=//evil.test/account/export"):
        text = _text(client.get(other, headers=SAME_ORIGIN))
        assert GENERIC_WORDING in text and "download" not in text.split("<h1>")[1][:400], other


def test_with_two_factor_the_wording_asks_for_the_code_too(app: Flask) -> None:
    user = UserFactory(two_factor=True)
    client = client_for(app, user)
    page = _text(client.get(f"/auth/reauth?next={EXPORT}", headers=SAME_ORIGIN))
    assert ("Confirm your password and your authentication code to download your data."
            in page)
