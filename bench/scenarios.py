"""The five scenarios: what each sends, what it expects, and Bastion's exact answer.

A scenario whose endpoint is not part of this checkout (the JSON API, article pages) is
reported as not available rather than replaced by something else.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests

from bench.seed import PASSWORD, Seeded
from bench.servers import PROXY_HEADERS

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
SESSION_COOKIE = "__Host-session"


@dataclass
class Scenario:
    name: str
    method: str
    path: str
    expected_status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    body_template: str | None = None  # "{user}" replaced per request (login)
    users: list[str] | None = None
    unavailable: str | None = None
    captured: dict[str, Any] | None = None
    note: str = ""


class Client:
    """Plain requests to Bastion as the bench's proxy would send them."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.http = requests.Session()

    def send(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        all_headers = {**PROXY_HEADERS, **(headers or {})}
        return self.http.request(
            method,
            self.base + path,
            headers=all_headers,
            allow_redirects=False,
            timeout=30,
            **kwargs,
        )

    def origin(self) -> str:
        return "https://" + self.base.split("://", 1)[1]


def _capture(resp: requests.Response, method: str, path: str) -> dict[str, Any]:
    return {
        "method": method,
        "path": path,
        "status": resp.status_code,
        "content_type": resp.headers.get("Content-Type", ""),
        "body_b64": base64.b64encode(resp.content).decode(),
    }


def _csrf_form(client: Client, path: str) -> tuple[str, str]:
    """An anonymous session cookie and its CSRF token, from a real form."""
    resp = client.send("GET", path)
    match = CSRF_RE.search(resp.text)
    cookie = resp.cookies.get(SESSION_COOKIE)
    if resp.status_code != 200 or match is None or cookie is None:
        raise RuntimeError(f"no form with a CSRF token at {path} ({resp.status_code})")
    return f"{SESSION_COOKIE}={cookie}", match.group(1)


def _api_token(client: Client, username: str) -> str | None:
    resp = client.send(
        "POST", "/api/v1/auth/token", json={"username": username, "password": PASSWORD}
    )
    if resp.status_code != 200:
        return None
    data = resp.json()
    token = data.get("access_token") or data.get("access")
    return str(token) if token else None


def api_list(client: Client, seeded: Seeded) -> Scenario:
    s = Scenario("api_list", "GET", "/api/v1/articles", 200)
    token = _api_token(client, seeded.reader)
    if token is None:
        s.unavailable = "no POST /api/v1/auth/token in this checkout"
        return s
    s.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    return s


def home_html(client: Client, seeded: Seeded) -> Scenario:
    return Scenario("home_html", "GET", "/", 200)


def article_html(client: Client, seeded: Seeded) -> Scenario:
    s = Scenario("article_html", "GET", f"/articles/{seeded.featured_article_id}", 200)
    if client.send("GET", s.path).status_code == 404:
        s.unavailable = "no /articles/<id> page in this checkout"
    return s


def signed_in_html(client: Client, seeded: Seeded) -> Scenario:
    """Sign in once through the real form; then load a page with that session cookie."""
    cookie, token = _csrf_form(client, "/auth/login")
    body = urlencode({"csrf_token": token, "username": seeded.reader, "password": PASSWORD})
    resp = client.send(
        "POST",
        "/auth/login",
        data=body,
        headers={
            "Cookie": cookie,
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": client.origin() + "/auth/login",
        },
    )
    session = resp.cookies.get(SESSION_COOKIE)
    if resp.status_code != 302 or session is None:
        raise RuntimeError(f"signing in for the bench failed ({resp.status_code})")
    headers = {"Cookie": f"{SESSION_COOKIE}={session}"}
    for path in ("/account", "/"):
        page = client.send("GET", path, headers=headers)
        if page.status_code == 200:
            # The first signed-in page may add the CSRF token to the session; keep that.
            if page.cookies.get(SESSION_COOKIE):
                headers = {"Cookie": f"{SESSION_COOKIE}={page.cookies[SESSION_COOKIE]}"}
            return Scenario(
                "signed_in_html",
                "GET",
                path,
                200,
                headers=headers,
                note=f"GET {path} as {seeded.reader}",
            )
    raise RuntimeError("no signed-in page answered 200")


def login(client: Client, seeded: Seeded) -> Scenario:
    """Password logins: the API token endpoint when present, else the login form."""
    if _api_token(client, seeded.reader) is not None:
        return Scenario(
            "login",
            "POST",
            "/api/v1/auth/token",
            200,
            headers={"Content-Type": "application/json"},
            body_template='{"username": "{user}", "password": "' + PASSWORD + '"}',
            users=seeded.logins,
            note="POST /api/v1/auth/token",
        )
    cookie, token = _csrf_form(client, "/auth/login")
    return Scenario(
        "login",
        "POST",
        "/auth/login",
        302,
        headers={
            "Cookie": cookie,
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": client.origin() + "/auth/login",
        },
        body_template=urlencode({"csrf_token": token})
        + "&username={user}&"
        + urlencode({"password": PASSWORD}),
        users=seeded.logins,
        note="POST /auth/login (form; no JSON API in this checkout)",
    )


BUILDERS = (api_list, home_html, article_html, signed_in_html, login)


def prepare(client: Client, seeded: Seeded) -> list[Scenario]:
    """Build every scenario and record Bastion's answer, which the bare app replays."""
    scenarios = [build(client, seeded) for build in BUILDERS]
    for s in scenarios:
        if s.unavailable:
            continue
        body = s.body_template.replace("{user}", seeded.reader) if s.body_template else s.body
        resp = client.send(s.method, s.path, headers=s.headers, data=body)
        if resp.status_code != s.expected_status:
            raise RuntimeError(f"{s.name}: {s.method} {s.path} answered {resp.status_code}")
        s.captured = _capture(resp, s.method, s.path)
    return scenarios
