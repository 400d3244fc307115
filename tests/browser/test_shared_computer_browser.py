"""Chromium on a shared computer: what the next person gets from Back and the forms.

The browser keeps the back/forward cache on (tests.support.browser), as a person's does:
Chromium shows even ``no-store`` pages again on Back while no cookie changed, so a session
ended elsewhere (everywhere, by an admin, on the server) leaves no cookie change behind.
Every check reads what the page shows after Back, not only what the server sent.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.factories import TOTP_SECRET
from tests.support.browser import sign_in

pytestmark = pytest.mark.browser

TITLE, BODY = "Quarterly layoffs draft", "Names on the list: nobody must read this yet."
COMMENT = "My unsent comment about my neighbour."
# What the page shows after a history step: nothing while the guard keeps it hidden.
SHOWN = """() => document.documentElement.hidden ? "" : document.body.innerText + " " +
  [...document.querySelectorAll("input:not([type=hidden]), textarea")].map(e => e.value).join(" ")"""
SETTLED = "() => document.readyState === 'complete' && !document.documentElement.hidden"
SESSION_CHECK = "/account/session-check"  # what history-guard.js asks


def _is_an_ended_sessions_check(msg: Any) -> bool:
    """Chromium logs every 4xx a fetch gets: the session check's 401 once a session ended."""
    return (str(msg.location.get("url", "")).endswith(SESSION_CHECK)
            and "status of 401" in msg.text)


@pytest.fixture
def tab(browser: Any) -> Iterator[tuple[Any, list[str]]]:
    """A page of its own browser context, and the console errors it reports (CSP ones
    included). Unlike the ``page`` fixture it answers every dialog yes: "Leave the page?"
    with unsent text, as the person leaving the computer does, and "Sign out everywhere?"."""
    context = browser.new_context()
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda msg: msg.type == "error" and not _is_an_ended_sessions_check(msg)
          and errors.append(msg.text))
    pg.on("dialog", lambda dialog: dialog.accept())
    yield pg, errors
    context.close()


def _watch_shows(pg: Any) -> list[bool]:
    """Every ``pageshow`` of the tab, True when it came from the back/forward cache."""
    shows: list[bool] = []
    pg.expose_function("__pageshow", lambda persisted: shows.append(bool(persisted)))
    pg.add_init_script("addEventListener('pageshow', e => window.__pageshow(e.persisted))")
    return shows


def _back(pg: Any, shows: list[bool]) -> str:
    """Press Back and wait until the page settled (restored and shown, or loaded again):
    what it then shows; "" at the start of the tab's history."""
    before = len(shows)
    try:
        pg.go_back(wait_until="commit")
    except PlaywrightError as exc:  # the answer to a POST, not kept: Chromium does not resend it
        if "ERR_CACHE_MISS" not in str(exc):
            raise
        pg.wait_for_url("chrome-error://**")
        pg.wait_for_load_state()
        return str(pg.evaluate("() => document.body.innerText"))
    if pg.url.startswith("about:"):
        return ""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pg.wait_for_timeout(25)
        if len(shows) <= before:
            continue
        with contextlib.suppress(PlaywrightError):  # the guard loads the page again
            if pg.evaluate(SETTLED):
                return str(pg.evaluate(SHOWN))
    raise AssertionError(f"Back did not settle at {pg.url}")


def _back_to_the_start(pg: Any, shows: list[bool]) -> list[tuple[str, str]]:
    """Back through the whole history of the tab: each page's address and what it shows."""
    seen = []
    while (text := _back(pg, shows)) or not pg.url.startswith("about:"):
        seen.append((pg.url, text))
    return seen


def _visit_private_pages(pg: Any, base: str) -> None:
    pg.goto(base + "/account")
    pg.goto(base + "/admin/users")
    pg.goto(base + "/articles/new")
    pg.fill("#title", TITLE)
    pg.fill("#body", BODY)
    pg.goto(base + "/")


def _assert_nothing_private(seen: list[tuple[str, str]], *private: str) -> None:
    assert seen, "Back went nowhere"
    for url, text in seen:
        for secret in private:
            assert secret not in text, (url, secret)
        assert "Sign out" not in text, url


@pytest.mark.asvs("V14.3.1", "V14.3.2", "V7.4.1")
def test_back_after_signing_out_shows_no_signed_in_page(live_server: Any, tab: Any) -> None:
    """Signed-in pages are no-store, and after sign-out Back, all the way to the sign-in
    form, shows none of them: not the account, an admin page or the editor's text."""
    live = live_server()
    with live.app.app_context():
        from tests.factories import UserFactory

        UserFactory(username="ada", email="ada@example.org", role_name="admin")
    pg, errors = tab
    shows = _watch_shows(pg)
    documents: dict[str, str] = {}
    pg.on("response", lambda r: r.request.resource_type == "document"
          and documents.setdefault(r.url.removeprefix(live.url), r.headers.get("cache-control", "")))
    sign_in(pg, live.url, "ada")
    _visit_private_pages(pg, live.url)
    for path in ("/account", "/admin/users", "/articles/new", "/"):
        assert documents[path] == "no-store", path  # nor the HTTP cache keeps them
    pg.get_by_role("button", name="Sign out", exact=True).click()
    pg.wait_for_load_state()
    seen = _back_to_the_start(pg, shows)
    _assert_nothing_private(seen, TITLE, BODY, "Your account", "ada")
    # The first page of the history is the sign-in form, the username typed into it gone.
    assert seen[-1][0].endswith("/auth/login") and "Sign in" in seen[-1][1]
    assert errors == []


@pytest.mark.asvs("V14.3.1", "V7.4.1")
def test_back_after_the_session_ended_on_the_server_shows_no_signed_in_page(
    live_server: Any, tab: Any
) -> None:
    """An admin's page, the account page and the editor's unsent text stay behind Back in
    the back/forward cache when the session row is revoked (expiry, an admin, a password
    change elsewhere): the cookie does not change. While the session lives, Back shows
    them as they were, the unsent text included."""
    live = live_server()
    with live.app.app_context():
        from tests.factories import UserFactory

        user_id = UserFactory(username="ada", role_name="admin").id
    pg, errors = tab
    shows = _watch_shows(pg)
    sign_in(pg, live.url, "ada")
    _visit_private_pages(pg, live.url)
    assert BODY in _back(pg, shows)  # still signed in: the editor as it was left
    assert shows[-1] is True, "not restored from the back/forward cache: nothing is tested"
    pg.goto(live.url + "/")
    with live.app.app_context():
        from bastion.auth.sessions import revoke_all

        assert revoke_all(user_id) == 1
    seen = _back_to_the_start(pg, shows)
    _assert_nothing_private(seen, TITLE, BODY, "Your account", "Users")
    assert any("/auth/login" in url for url, _ in seen)
    assert errors == []


@pytest.mark.asvs("V14.3.1", "V7.4.1")
def test_the_check_of_a_restored_page_leaves_the_session_as_it_was(
    live_server: Any, tab: Any
) -> None:
    """The guard asks the session check, which renders no page: a live session's cookie is
    left as it was, so a message waiting for the next page would stay for it. Ended
    elsewhere, a public page Back restores is loaded again as a visitor sees it, with no
    "Please sign in" left for it by the check (a sign-in redirect would leave one).

    Chromium restores a no-store page only while the cookie is the one it came with, and
    every Bastion page shows a waiting message at once, so it never restores one with a
    message waiting: tests/account/test_session_check.py shows the message kept.
    """
    live = live_server()
    with live.app.app_context():
        from tests.factories import UserFactory

        user_id = UserFactory(username="nell", role_name="viewer").id
    pg, errors = tab
    shows = _watch_shows(pg)
    checks: list[tuple[str, int]] = []
    pg.on("response", lambda r: r.request.resource_type == "fetch" and checks.append(
        (f"{r.request.method} {r.url.removeprefix(live.url)}", r.status)))
    sign_in(pg, live.url, "nell")
    pg.goto(live.url + "/articles")
    pg.goto(live.url + "/account")
    pg.goto(live.url + "/")
    cookies = pg.context.cookies()
    assert "Your account" in _back(pg, shows)
    assert shows[-1] is True, "not restored from the back/forward cache: nothing is tested"
    assert checks == [(f"GET {SESSION_CHECK}", 204)]
    assert pg.context.cookies() == cookies

    with live.app.app_context():
        from bastion.auth.sessions import revoke_all

        assert revoke_all(user_id) == 1
    shown = _back(pg, shows)
    assert pg.url == live.url + "/articles" and checks[-1] == (f"GET {SESSION_CHECK}", 401)
    assert "Sign in" in shown and "Sign out" not in shown
    assert "Please sign in" not in shown
    assert errors == []


@pytest.mark.asvs("V14.3.1", "V7.4.1")
def test_back_after_signing_out_everywhere_from_another_browser(
    live_server: Any, tab: Any, browser: Any
) -> None:
    """Left signed in at the library, ended from a phone: Back at the library shows
    neither the account page nor the comment that was being written."""
    live = live_server()
    with live.app.app_context():
        from tests.factories import ArticleFactory, UserFactory

        UserFactory(username="nell", email="nell@example.org", role_name="viewer")
        article_id = ArticleFactory(title="Village fete").id
    pg, errors = tab
    shows = _watch_shows(pg)
    sign_in(pg, live.url, "nell")  # on the library's computer
    pg.goto(live.url + "/account")
    pg.goto(f"{live.url}/articles/{article_id}")
    pg.fill("#body", COMMENT)
    pg.goto(live.url + "/")

    phone = browser.new_context()
    try:
        other = phone.new_page()
        other.on("dialog", lambda dialog: dialog.accept())
        sign_in(other, live.url, "nell")
        other.goto(live.url + "/account")
        other.get_by_role("button", name="Sign out everywhere").click()
        other.wait_for_load_state()
        assert "/auth/login" in other.url
    finally:
        phone.close()

    seen = _back_to_the_start(pg, shows)
    _assert_nothing_private(seen, COMMENT, "Your account", "nell@example.org")
    assert errors == []


@pytest.mark.asvs("V14.3.2")
def test_secrets_shown_once_are_not_shown_again_by_back(live_server: Any, tab: Any) -> None:
    """A new token, new recovery codes and the key of a new second factor: once their page
    is left, Back shows none of them. The first two are answers to a POST, which Chromium
    neither keeps in its back/forward cache nor sends again unasked; the key's page asks
    the server again, which by then has the factor on and sends the account page."""
    live = live_server()
    with live.app.app_context():
        from tests.factories import UserFactory

        UserFactory(username="ada", role_name="admin")
        UserFactory(username="nell", role_name="viewer")
    pg, errors = tab
    shows = _watch_shows(pg)
    sign_in(pg, live.url, "ada")

    pg.goto(live.url + "/account/tokens")
    pg.fill("#name", "backup script")
    pg.get_by_label("articles:read").check()
    pg.get_by_role("button", name="Create token").click()
    pg.wait_for_load_state()
    token = pg.input_value("#new-token")
    assert len(token) > 20
    # "Done" leads to the same address (/account/tokens), so the page is replaced in the
    # history; leaving by any other link keeps it there, one Back away.
    pg.get_by_role("navigation", name="Main").get_by_role("link", name="Articles").click()
    pg.wait_for_load_state()
    assert token not in _back(pg, shows)

    pg.goto(live.url + "/account")
    totp = pyotp.TOTP(TOTP_SECRET)  # the step after the one the sign-in used
    pg.fill("#code", totp.generate_otp(totp.timecode(time.time()) + 1))
    pg.get_by_role("button", name="New recovery codes").click()
    pg.wait_for_load_state()
    codes = [c.strip() for c in pg.locator("#recovery-codes code").all_inner_texts()]
    assert len(codes) == 10
    pg.get_by_role("link", name="I have saved them").click()
    pg.wait_for_load_state()
    shown = _back(pg, shows)
    assert not any(code in shown for code in codes)

    pg.context.clear_cookies()
    sign_in(pg, live.url, "nell")
    pg.goto(live.url + "/account/2fa")
    secret = pg.inner_text("#totp-secret").strip()
    pg.fill("#code", pyotp.TOTP(secret).now())
    pg.get_by_role("button", name="Turn on two-factor authentication").click()
    pg.wait_for_load_state()
    pg.get_by_role("link", name="I have saved them").click()
    pg.wait_for_load_state()
    assert secret not in _back(pg, shows)  # the recovery codes' page: a POST's answer
    assert secret not in _back(pg, shows) and pg.url.endswith("/account")
    assert errors == []


# Every sensitive field tells the browser and password managers what it holds (V6.2.7).
EXPECTED_AUTOCOMPLETE = {
    "/auth/login": {"username": "username", "password": "current-password"},
    "/auth/register": {"username": "username", "email": "email", "password": "new-password",
                       "confirm": "new-password"},
    "/auth/reset": {"email": "email"},
}
SIGNED_IN_AUTOCOMPLETE = {
    "/account": {"current": "current-password", "password": "new-password",
                 "confirm": "new-password", "email": "email"},
    "/account/2fa": {"code": "one-time-code"},
    "/auth/reauth": {"password": "current-password"},
}
FIELDS = "() => Object.fromEntries([...document.querySelectorAll('input[name]')].map(e => [e.name, e.autocomplete]))"


@pytest.mark.asvs("V6.2.7", "V14.3.3")
def test_sign_in_forms_name_their_fields_and_forget_them_on_back(
    live_server: Any, tab: Any
) -> None:
    live = live_server()
    with live.app.app_context():
        from tests.factories import UserFactory

        UserFactory(username="nell", role_name="viewer")
    pg, errors = tab
    shows = _watch_shows(pg)
    for path, expected in EXPECTED_AUTOCOMPLETE.items():
        pg.goto(live.url + path)
        fields = pg.evaluate(FIELDS)
        assert {name: fields.get(name) for name in expected} == expected, path

    # Typed and left without sending: Back brings the form, not what the last person typed.
    pg.goto(live.url + "/auth/register")
    pg.fill("#username", "nell_private")
    pg.fill("#email", "nell.private@example.org")
    pg.goto(live.url + "/auth/login")
    pg.fill("#username", "nell")
    pg.check("#remember")
    pg.goto(live.url + "/auth/reset")
    shown = _back(pg, shows)
    assert pg.url.endswith("/auth/login") and "nell" not in shown
    assert not pg.is_checked("#remember")
    shown = _back(pg, shows)
    assert pg.url.endswith("/auth/register") and "nell" not in shown

    sign_in(pg, live.url, "nell")
    for path, expected in SIGNED_IN_AUTOCOMPLETE.items():
        pg.goto(live.url + path)
        fields = pg.evaluate(FIELDS)
        assert {name: fields.get(name) for name in expected} == expected, path
    assert errors == []
