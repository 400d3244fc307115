"""Wapiti, a black-box web scanner, crawls the running site as a signed-in editor and finds
nothing: no XSS (reflected or stored), SQL, command or CRLF injection, path traversal, open
redirect, SSRF, XXE, form without a CSRF token or weak cookie and header settings.

Bounded: those modules only, at most ``SCAN_S`` seconds, each module at most ``ATTACK_S``.
Wapiti pins libraries at versions Bastion does not use (``requirements/tools/wapiti.txt``),
so it runs from its own environment, ``.venv-wapiti``, which ``make install-dev`` builds.
Its out-of-band checks go to a closed loopback port, never outside. The same scan against a
deliberately flawed app shows that it finds real flaws.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, redirect, request
from markupsafe import Markup

pytestmark = [pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
WAPITI = ROOT / ".venv-wapiti" / "bin" / "wapiti"
MODULES = (
    "xss,permanentxss,sql,exec,file,crlf,redirect,ssrf,upload,xxe,csrf,"
    "http_headers,cookieflags,csp"
)
SCAN_S = 100
ATTACK_S = 20
SESSION_COOKIE = "__Host-session"


def _scan(url: str, out_dir: Path, *, modules: str = MODULES, cookie: str | None = None,
          exclude: Iterable[str] = ()) -> dict[str, Any]:
    assert WAPITI.exists(), "wapiti lives in .venv-wapiti: run `make install-dev`"
    report = out_dir / "wapiti.json"
    cmd = [
        str(WAPITI), "-u", url, "--scope", "folder", "-m", modules,
        "--max-scan-time", str(SCAN_S), "--max-attack-time", str(ATTACK_S), "--tasks", "4",
        "--flush-session", "--store-session", str(out_dir / "session"),
        "--store-config", str(out_dir / "config"),
        # Out-of-band findings (SSRF, stored injections) are reported to an endpoint; here a
        # closed loopback port, so nothing leaves the machine.
        "--endpoint", "http://127.0.0.1:9/", "--dns-endpoint", "localhost",
        "--no-bugreport", "-f", "json", "-o", str(report), "-v", "0",
    ]  # fmt: skip
    if cookie:
        cmd += ["-C", cookie]
    for path in exclude:
        cmd += ["-x", path]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=SCAN_S + 120,
                            check=False)
    assert report.exists(), result.stdout[-2000:] + result.stderr[-2000:]
    return dict(json.loads(report.read_text()))


def _findings(report: dict[str, Any], section: str) -> dict[str, list[str]]:
    return {
        name: [f"{item.get('method')} {item.get('path')}: {item.get('info')}" for item in items]
        for name, items in report[section].items()
        if items
    }


class _Recorder:
    """WSGI middleware keeping the method, path and status of every request."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.seen: list[tuple[str, str, int]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def recording(status: str, headers: Any, exc_info: Any = None) -> Any:
            self.seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"],
                              int(status.split()[0])))
            return start_response(status, headers, exc_info)

        return self.app(environ, recording)


def _sign_in(url: str, username: str, password: str) -> str:
    """The session cookie from the real login form (CSRF token and all)."""
    form = requests.get(f"{url}/auth/login", timeout=10)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form.text)
    assert token is not None
    done = requests.post(
        f"{url}/auth/login",
        data={"username": username, "password": password, "csrf_token": token.group(1)},
        cookies={SESSION_COOKIE: form.cookies[SESSION_COOKIE]},
        allow_redirects=False,
        timeout=30,
    )
    assert done.status_code == 302, done.text[:500]
    return f"{SESSION_COOKIE}={done.cookies[SESSION_COOKIE]}"


@pytest.mark.asvs("V1.2.1", "V1.2.4", "V1.2.5", "V3.5.1", "V3.7.2", "V5.3.2", "V3.4.3")
def test_wapiti_finds_nothing_on_the_signed_in_site(live_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import PASSWORD, ArticleFactory, CommentFactory, UserFactory
    from tests.support.roles import rate_limits_off

    live = live_server()
    with live.app.app_context():
        editor = UserFactory(username="eddie", email="eddie@example.org", role_name="editor")
        for title in ("Security notes", "Flask tips"):
            CommentFactory(article=ArticleFactory(title=title, author=editor), author=editor)
    recorder = _Recorder(live.app.wsgi_app)
    live.app.wsgi_app = recorder  # type: ignore[method-assign]
    with rate_limits_off():  # thousands of requests from one address, on purpose
        cookie = _sign_in(live.url, "eddie", PASSWORD)
        report = _scan(f"{live.url}/", tmp_path, cookie=cookie,
                       exclude=[f"{live.url}/auth/logout"])

    assert _findings(report, "vulnerabilities") == {}
    assert _findings(report, "anomalies") == {}  # no 500s, no timeouts
    assert [s for s in recorder.seen if s[2] >= 500] == []
    # The scan covered the signed-in site (an editor's pages and forms), not just the
    # public pages, and attacked its forms.
    signed_in = {path for method, path, status in recorder.seen
                 if status == 200 and method == "GET"}
    assert {"/account", "/articles/new", "/articles/1/edit"} <= signed_in
    assert sum(1 for method, _, _ in recorder.seen if method == "POST") > 50
    assert report["infos"]["crawled_pages_nbr"] >= 30


def _flawed_app() -> Flask:
    """The mistakes the scan looks for, made on purpose: the control."""
    app = Flask("flawed")

    @app.get("/")
    def index() -> str:
        return ('<a href="/search?q=flask">search</a> <a href="/go?next=/">home</a> '
                '<form method="post" action="/comment"><input name="text">'
                '<button>Send</button></form>')

    @app.get("/search")
    def search() -> str:
        return Markup(f"<p>Results for {request.args.get('q', '')}</p>")  # noqa: S704 - the flaw under test

    @app.get("/go")
    def go() -> Any:
        return redirect(request.args.get("next", "/"))  # the flaw

    @app.post("/comment")
    def comment() -> str:  # no CSRF token: the flaw
        return "thanks"

    return app


def test_the_same_scan_finds_real_flaws(tmp_path: Path) -> None:
    from tests.support.browser import serve

    live = serve(_flawed_app())
    try:
        report = _scan(f"{live.url}/", tmp_path, modules="xss,redirect,csrf")
    finally:
        live.stop()
    found = _findings(report, "vulnerabilities")
    assert {"Reflected Cross Site Scripting", "Open Redirect",
            "Cross Site Request Forgery"} <= found.keys(), found
