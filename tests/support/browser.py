"""Chromium through Playwright (one browser per session) and a live server in a thread."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

CHROMIUM = os.environ.get("BASTION_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]

# What Chromium logs for a blocked load or script, and for a Trusted Types sink refusing a
# string ("This document requires 'TrustedHTML' assignment."): both are CSP violations.
CSP_CONSOLE = re.compile(r"Content Security Policy|requires 'Trusted\w+' assignment")
# Records every violation the page itself sees (an init script runs outside the page's CSP).
CSP_LISTENER = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.effectiveDirective), true);
"""

# Added by Playwright to every launch, left out here: see ``browser``.
BFCACHE_OFF_SWITCH = "--disable-back-forward-cache"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Playwright turns the back/forward cache off; a person's Chromium has it on, and it
        # shows "no-store" pages again on Back (tests/browser/test_shared_computer_browser.py).
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                                     ignore_default_args=[BFCACHE_OFF_SWITCH])
        yield browser
        browser.close()


@dataclass
class LiveServer:
    app: Flask
    url: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


def serve(app: Flask) -> LiveServer:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return LiveServer(app=app, url=f"http://127.0.0.1:{port}", server=server, thread=thread)


@pytest.fixture
def live_server(make_app: Callable[..., Flask]) -> Iterator[Callable[..., LiveServer]]:
    """Start the app (SQLite by default) on a free loopback port; config overrides allowed."""
    started: list[LiveServer] = []

    def start(backend: str = "sqlite", **overrides: Any) -> LiveServer:
        overrides.setdefault("TRUSTED_HOSTS", ["127.0.0.1", "localhost"])
        live = serve(make_app(backend=backend, **overrides))
        started.append(live)
        return live

    yield start
    for live in started:
        live.stop()


@dataclass
class PageWatch:
    """Collects what a page reports: CSP violations, console errors, dialogs."""

    console_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    # "Are you sure?" questions the site asks before a destructive action (forms.js) that
    # the test means to answer OK: accepted and not counted as dialogs, which otherwise
    # mean injected script (an alert) ran. Any other dialog is dismissed and counted.
    confirms: set[str] = field(default_factory=set)
    # Set by a test that injects blocked markup on purpose; otherwise any CSP violation
    # (a template's inline script or style, a site script hitting a Trusted Types sink)
    # fails the test when its page closes.
    violations_expected: bool = False


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, PageWatch]]:
    context = browser.new_context()
    page = context.new_page()
    watch = PageWatch()

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            text = msg.text
            (watch.csp_violations if CSP_CONSOLE.search(text) else watch.console_errors).append(text)

    def on_dialog(dialog: Any) -> None:
        if dialog.type == "confirm" and dialog.message in watch.confirms:
            dialog.accept()
            return
        watch.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("console", on_console)
    page.on("dialog", on_dialog)
    yield page, watch
    context.close()
    assert watch.violations_expected or not watch.csp_violations, watch.csp_violations


Markup = Mapping[str, str]


def inject_markup(pg: Any, url: str, markup: Markup | Callable[[Any], Markup]) -> None:
    """Serve ``url`` to ``pg`` as the server answered it (status, headers, its CSP and
    nonce) with markup added to the HTML, as if it had slipped past escaping: each value
    goes in just before the first occurrence of its key (``"</head>"``, ``"</body>"``). A
    callable gets the server's response first, to build the markup from it (its nonce)."""

    def fulfill(route: Any) -> None:
        response = route.fetch()
        body = response.text()
        for before, added in (markup(response) if callable(markup) else markup).items():
            assert before in body, f"{before} not in {url}"
            body = body.replace(before, added + before, 1)
        route.fulfill(response=response, body=body)

    pg.route(url, fulfill)


def sign_in(pg: Any, base: str, username: str) -> None:
    """Sign in through the login page, as a person would: the password, then the code
    from the app when the account has 2FA (the factories' ``TOTP_SECRET``)."""
    import pyotp

    from tests.factories import PASSWORD, TOTP_SECRET

    pg.goto(base + "/auth/login")
    pg.fill("#username", username)
    pg.fill("#password", PASSWORD)
    pg.get_by_role("button", name="Sign in", exact=True).click()
    pg.wait_for_load_state()
    if pg.url.endswith("/auth/2fa"):
        pg.fill("#code", pyotp.TOTP(TOTP_SECRET).now())
        pg.get_by_role("button", name="Verify and sign in").click()
        pg.wait_for_load_state()
    assert pg.locator("text=Sign out").count() == 1, f"{username} not signed in"
