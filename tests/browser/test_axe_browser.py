"""axe-core's WCAG 2.1 A and AA rules in a real Chromium, on every page each role sees,
at a desktop's and a phone's width: a serious or critical violation fails the test.

axe judges what hand-written DOM checks miss (computed accessible names, ARIA roles and
states, contrast over real backgrounds); test_accessibility_browser.py checks the rest.
One app, seeded once, serves the whole module, and each role signs in once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import base_config, build_app
from tests.support.browser import LiveServer, serve, sign_in

pytestmark = pytest.mark.browser

# WCAG 2.0 and 2.1, levels A and AA (axe's tags; 2.2 and best practices are not asked).
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}
# The site follows the system's dark mode: its colours are checked there too (contrast alone,
# as nothing else changes with the scheme).
DARK_OPTIONS = {
    "runOnly": {"type": "rule", "values": ["color-contrast"]},
    "resultTypes": ["violations"],
}
FAILING_IMPACTS = frozenset({"serious", "critical"})
WIDTHS = (1280, 375)

# (role, page name, path with {editor}, {article}, {draft} and {member} from the seed).
PAGES = [
    ("anonymous", "home", "/"),
    ("anonymous", "article", "/articles/{article}"),
    ("anonymous", "profile", "/u/{editor}"),
    ("anonymous", "search", "/articles?q=Article"),
    ("anonymous", "sign-in", "/auth/login"),
    ("anonymous", "register", "/auth/register"),
    ("anonymous", "reset", "/auth/reset"),
    ("anonymous", "404", "/no-such-page"),
    ("viewer", "account and sessions", "/account"),
    ("viewer", "2FA setup", "/account/2fa"),
    ("viewer", "tokens", "/account/tokens"),
    ("viewer", "delete account", "/account/delete"),
    ("editor", "articles with drafts", "/articles"),
    ("editor", "new article", "/articles/new"),
    ("editor", "edit article", "/articles/{draft}/edit"),
    ("editor", "images", "/articles/{draft}/images"),
    ("admin", "users", "/admin/users"),
    ("admin", "audit log", "/admin/audit"),
    ("admin", "security", "/admin/security"),
    ("admin", "2FA reset", "/admin/users/{member}/2fa-reset"),
    ("admin", "delete user", "/admin/users/{member}/delete"),
]


@dataclass
class Site:
    live: LiveServer
    data: dict[str, Any]
    browser: Any
    pages: dict[str, Any] = field(default_factory=dict)

    def page_for(self, role: str) -> Any:
        """One tab per role, signed in on first use (a second sign-in would cost a TOTP
        code that may not be reused within its 30 seconds)."""
        if role not in self.pages:
            pg = self.browser.new_context().new_page()
            if role != "anonymous":
                sign_in(pg, self.live.url, self.data[role])
            self.pages[role] = pg
        return self.pages[role]


def _seed(app: Any) -> dict[str, Any]:
    """A user of each role with what their pages list, long enough that tables and code
    scroll in their boxes on a phone: an article with a wide table, long code and comments,
    a draft, sessions and a token; a member to reset or delete; audit events."""
    from bastion.api import pats
    from bastion.models.base import utcnow
    from bastion.security import audit
    from tests.factories import ArticleFactory, CommentFactory, UserFactory

    with app.app_context():
        admin = UserFactory(role_name="admin")
        viewer = UserFactory(username="vera", display_name="Vera Viewer")
        pats.create(viewer, name="nightly-backup-" + "x" * 60, scopes=["articles:read"])
        member = UserFactory(two_factor=True, disabled_at=utcnow())
        UserFactory(username="a-rather-long-username-of-32-chs")
        editor = UserFactory(username="ada10", role_name="editor", display_name="Ada Lovelace")
        ArticleFactory.create_batch(3, author=editor)
        draft = ArticleFactory(author=editor, status="draft", published_at=None)
        cells = "".join(f"<td>cell{i}_{'x' * 30}</td>" for i in range(8))
        article = ArticleFactory(
            author=editor,
            body_html="<h2>Data</h2><table><thead><tr>" + "<th>head</th>" * 8 + "</tr></thead>"
            f"<tbody><tr>{cells}</tr></tbody></table><pre><code>{'y' * 300}</code></pre>"
            "<blockquote><p>quoted</p></blockquote>",
        )
        CommentFactory(article=article, body="First!\nSecond line.")
        CommentFactory(article=article, author=editor)
        audit.record("csp.report", details={"blocked-uri": "http://evil.test/" + "A" * 300})
        return {
            "viewer": viewer.username,
            "editor": editor.username,
            "admin": admin.username,
            "article": article.id,
            "draft": draft.id,
            "member": member.id,
        }


@pytest.fixture(scope="module")
def site(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("axe")
    app = build_app(
        base_config(
            tmp, f"sqlite:///{tmp / 'bastion.db'}", TRUSTED_HOSTS=["127.0.0.1", "localhost"]
        )
    )
    live = serve(app)
    site = Site(live=live, data=_seed(app), browser=browser)
    yield site
    for pg in site.pages.values():
        pg.context.close()
    live.stop()
    from bastion.extensions import db

    with app.app_context():
        db.engine.dispose()


def _axe(pg: Any, options: dict[str, Any]) -> list[dict[str, Any]]:
    """axe's violations of the page as it stands, once the layout has settled (a resize
    handler may have run); axe is injected once per page load."""
    from axe_playwright_python.base import AXE_SCRIPT

    pg.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    if not pg.evaluate("() => typeof window.axe !== 'undefined'"):
        pg.evaluate(AXE_SCRIPT)
    violations: list[dict[str, Any]] = pg.evaluate(
        "(options) => axe.run(document, options).then((r) => r.violations)", options
    )
    return violations


def _describe(where: str, violation: dict[str, Any]) -> str:
    targets = ", ".join(" ".join(node["target"]) for node in violation["nodes"][:3])
    return (
        f"{where} {violation['id']} ({violation['impact']}) x{len(violation['nodes'])}: "
        f"{violation['help']} [{targets}]"
    )


@pytest.mark.parametrize(("role", "name", "path"), PAGES, ids=[f"{r}:{n}" for r, n, _ in PAGES])
def test_axe_finds_no_serious_violation(site: Site, role: str, name: str, path: str) -> None:
    pg = site.page_for(role)
    pg.emulate_media(color_scheme="light")
    pg.set_viewport_size({"width": WIDTHS[0], "height": 800})
    response = pg.goto(site.live.url + path.format(**site.data))
    assert response is not None and response.status == (404 if name == "404" else 200), pg.url
    runs = [(f"{width}px", width, "light", AXE_OPTIONS) for width in WIDTHS]
    runs.append(("dark", WIDTHS[0], "dark", DARK_OPTIONS))
    found: list[str] = []
    for where, width, scheme, options in runs:
        pg.emulate_media(color_scheme=scheme)
        pg.set_viewport_size({"width": width, "height": 800})
        found += [_describe(where, v) for v in _axe(pg, options) if v["impact"] in FAILING_IMPACTS]
    assert found == [], f"{role} {path}:\n" + "\n".join(found)
