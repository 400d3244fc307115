"""The readable device name on the session list, from real and hostile User-Agents."""

from __future__ import annotations

import ast
import inspect
from html.parser import HTMLParser
from itertools import product
from pathlib import Path

import pytest
from flask.testing import FlaskClient

import bastion
from bastion.auth import devices
from bastion.auth.devices import BROWSERS, MAX_CHARS, SYSTEMS, TOOLS, UNKNOWN, device_label
from bastion.models import User
from tests.support.account_fixtures import sign_in

WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"
LINUX = "Mozilla/5.0 (X11; Linux x86_64)"
ANDROID = "Mozilla/5.0 (Linux; Android 10; K)"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X)"
WEBKIT = "AppleWebKit/537.36 (KHTML, like Gecko)"
IOS_WEBKIT = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
CHROME = "Chrome/124.0.0.0 Safari/537.36"
CHROME_MOBILE = "Chrome/124.0.0.0 Mobile Safari/537.36"
SAFARI_MAC = f"{MAC} {IOS_WEBKIT} Version/17.4.1 Safari/605.1.15"
FIREFOX_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"

REAL = [
    (f"{WIN} {WEBKIT} {CHROME}", "Chrome on Windows"),
    (f"{MAC} {WEBKIT} {CHROME}", "Chrome on macOS"),
    (f"{LINUX} {WEBKIT} {CHROME}", "Chrome on Linux"),
    (f"{ANDROID} {WEBKIT} {CHROME_MOBILE}", "Chrome on Android"),
    (f"{IPHONE} {IOS_WEBKIT} CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1", "Chrome on iPhone"),
    (f"Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) {WEBKIT} {CHROME}", "Chrome on ChromeOS"),
    (FIREFOX_WIN, "Firefox on Windows"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
     "Firefox on macOS"),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
     "Firefox on Linux"),
    ("Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0", "Firefox on Android"),
    (f"{IPHONE} {IOS_WEBKIT} FxiOS/125.0 Mobile/15E148 Safari/605.1.15", "Firefox on iPhone"),
    (SAFARI_MAC, "Safari on macOS"),
    (f"{IPHONE} {IOS_WEBKIT} Version/17.4.1 Mobile/15E148 Safari/604.1", "Safari on iPhone"),
    (f"Mozilla/5.0 (iPad; CPU OS 17_4_1 like Mac OS X) {IOS_WEBKIT} Version/17.4.1 "
     "Mobile/15E148 Safari/604.1", "Safari on iPad"),
    # An iPad asking for desktop pages sends the Mac's header, byte for byte.
    (SAFARI_MAC, "Safari on macOS"),
    # An app's own web view on iOS names no browser.
    (f"{IPHONE} {IOS_WEBKIT} Mobile/15E148", "Unknown browser on iPhone"),
    (f"{WIN} {WEBKIT} {CHROME} Edg/124.0.2478.80", "Edge on Windows"),
    (f"{WIN} {WEBKIT} Chrome/70.0.3538.102 Safari/537.36 Edge/18.19582", "Edge on Windows"),
    (f"{ANDROID} {WEBKIT} {CHROME_MOBILE} EdgA/124.0.2478.64", "Edge on Android"),
    (f"{IPHONE} {IOS_WEBKIT} Version/17.0 EdgiOS/124.2478.71 Mobile/15E148 Safari/604.1",
     "Edge on iPhone"),
    (f"{WIN} {WEBKIT} {CHROME} OPR/110.0.0.0", "Opera on Windows"),
    (f"Mozilla/5.0 (Linux; Android 10; VOG-L29) {WEBKIT} {CHROME_MOBILE} OPR/81.1.4292.78446",
     "Opera on Android"),
    ("Opera/9.80 (Windows NT 6.1; WOW64) Presto/2.12.388 Version/12.18", "Opera on Windows"),
    ("Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36", "Samsung Internet on Android"),
    (f"{LINUX} {WEBKIT} {CHROME} Vivaldi/6.7.3329.21", "Vivaldi on Linux"),
    ("Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
     "Internet Explorer on Windows"),
    # Android's old built-in browser says "Safari" but is not.
    ("Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) AppleWebkit/534.30 "
     "(KHTML, like Gecko) Version/4.0 Mobile Safari/534.30", "Unknown browser on Android"),
    ("curl/8.4.0", "curl"),
    ("python-requests/2.31.0", "Python requests"),
    ("python-httpx/0.27.0", "Python HTTPX"),
    ("Python/3.11 aiohttp/3.9.5", "Python"),
    ("Wget/1.21.4", "Wget"),
    ("Go-http-client/1.1", "Go HTTP client"),
    ("HTTPie/3.2.2", "HTTPie"),
]

NOTHING = [
    "", None, "   ", "alice-phone/1.0", "asdf qwerty 12345", "\ufffd<script>", "(" * 255,
    "Mozilla/5.0", "Mozilla/5.0 ()", "\x00" * 255,
]

# Long runs of partial tokens and open brackets: the inputs that make backtracking
# patterns slow, at the stored length and well beyond it.
ADVERSARIAL = [
    "(" * MAX_CHARS, "Mozilla/5.0 (" * 30, "Chrome/" * 40, "Edg" * 90, "Safari/Version/" * 20,
    "a" * MAX_CHARS, " " * MAX_CHARS + "x", "\udcff" * MAX_CHARS, ";" * 10_000, "(" * 1_000_000,
]


@pytest.mark.parametrize(("user_agent", "label"), REAL)
def test_real_user_agents_get_a_readable_name(user_agent: str, label: str) -> None:
    assert len(user_agent) <= MAX_CHARS
    assert device_label(user_agent) == label


@pytest.mark.parametrize("user_agent", NOTHING)
def test_nothing_recognisable_is_an_unknown_device(user_agent: str | None) -> None:
    assert device_label(user_agent) == UNKNOWN


def _every_label() -> set[str]:
    browsers = [name for _, name in BROWSERS] + ["Safari"]
    systems = [name for _, name in SYSTEMS]
    return ({UNKNOWN, *browsers, *(name for _, name in TOOLS)}
            | {f"{b} on {s}" for b, s in product(browsers, systems)}
            | {f"Unknown browser on {s}" for s in systems})


@pytest.mark.parametrize("user_agent", [ua for ua, _ in REAL] + NOTHING + ADVERSARIAL + [
    f"{FIREFOX_WIN} \"><script>alert(1)</script>", "<img src=x onerror=alert(1)> Windows",
])
def test_the_label_is_made_only_of_fixed_names(user_agent: str | None) -> None:
    """No part of the header reaches the label, whatever the client sends."""
    assert device_label(user_agent) in _every_label()


def test_only_the_stored_length_is_read() -> None:
    """The work is bounded by MAX_CHARS, not by what a caller passes in."""
    assert device_label("(" * MAX_CHARS + FIREFOX_WIN) == UNKNOWN
    assert device_label(FIREFOX_WIN + "(" * 1_000_000) == "Firefox on Windows"
    assert device_label(" " * (MAX_CHARS - 3) + "curl/8") == UNKNOWN


def test_no_regular_expression_can_backtrack() -> None:
    """ReDoS guard without timing: the module matches only with ``in`` and ``startswith``.

    Reintroducing a regular expression here should be a decision, with its own test.
    """
    tree = ast.parse(inspect.getsource(devices))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"re", "regex", "fnmatch"}
    for user_agent in ADVERSARIAL:
        assert device_label(user_agent) in _every_label()


class _Cells(HTMLParser):
    """Text and attribute values of the session table, kept apart; text also by the
    elements it sits in (``summary``: what a keyboard or screen reader meets first)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.open: list[str] = []
        self.text: list[str] = []
        self.summary: list[str] = []
        self.disclosed: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and ("aria-labelledby", "sessions-h") in attrs:
            self.inside = True
        elif self.inside:
            self.attrs += [(tag, name, value) for name, value in attrs]
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False
        elif self.inside and tag in self.open:
            del self.open[len(self.open) - 1 - self.open[::-1].index(tag):]

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.text.append(data)
            if "summary" in self.open:
                self.summary.append(data)
            elif "details" in self.open:
                self.disclosed.append(data)


class _Titles(HTMLParser):
    """The elements of a template that carry a ``title`` attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags += [tag for name, _ in attrs if name == "title"]


def _session_table(client: FlaskClient) -> _Cells:
    page = client.get("/account")
    assert page.status_code == 200
    cells = _Cells()
    cells.feed(page.get_data(as_text=True))
    return cells


def test_the_full_user_agent_is_reachable_without_a_mouse(
        client: FlaskClient, user: User) -> None:
    """The User-Agent the browser sent was only in a ``title``: shown when a mouse hovers,
    never to someone on a keyboard, nor reliably to a screen reader. It is the text of a
    disclosure whose summary (focusable, a button to a screen reader) is the device's
    name and its badges."""
    client.environ_base["HTTP_USER_AGENT"] = FIREFOX_WIN
    sign_in(client, "alice")
    cells = _session_table(client)
    summary = " ".join(" ".join(cells.summary).split())
    assert summary == "Firefox on Windows This device"
    assert FIREFOX_WIN in "".join(cells.disclosed)
    assert not [a for a in cells.attrs if a[1] == "title"]
    assert [(tag, name) for tag, name, value in cells.attrs if value and FIREFOX_WIN in value] == []
    assert ("button", "aria-label", "Revoke: Firefox on Windows, 127.0.0.1") in cells.attrs


def test_no_template_keeps_information_only_in_a_title() -> None:
    """A ``title`` attribute is a tooltip under a mouse and nothing to a keyboard; what it
    says belongs in text (WCAG 1.3.1, 2.1.1). Authors' Markdown titles are their text."""
    root = Path(bastion.__file__).parent / "templates"
    found: dict[str, list[str]] = {}
    for template in sorted(root.rglob("*.html")):
        parser = _Titles()
        parser.feed(template.read_text())
        if parser.tags:
            found[str(template.relative_to(root))] = parser.tags
    assert found == {}


@pytest.mark.asvs("V1.2.1")
def test_a_hostile_user_agent_stays_text(client: FlaskClient, user: User) -> None:
    hostile = f'{FIREFOX_WIN} "><img src=x onerror=alert(1)>'
    client.environ_base["HTTP_USER_AGENT"] = hostile
    sign_in(client, "alice")
    html = client.get("/account").get_data(as_text=True)
    assert "<img src=x" not in html
    assert FIREFOX_WIN + " &#34;&gt;&lt;img src=x onerror=alert(1)&gt;</p>" in html
    cells = _session_table(client)
    assert hostile in "".join(cells.disclosed)
    assert not [a for a in cells.attrs if a[0] == "img"]
    assert "Firefox on Windows" in "".join(cells.summary)


def test_a_session_without_a_user_agent_is_an_unknown_device(
        client: FlaskClient, user: User) -> None:
    client.environ_base["HTTP_USER_AGENT"] = ""
    sign_in(client, "alice")
    cells = _session_table(client)
    assert UNKNOWN in "".join(cells.text)
    assert "This device" in "".join(cells.text)
    assert not [a for a in cells.attrs if a[1] == "title"]
    assert not [a for a in cells.attrs if a[0] in ("details", "summary")]
