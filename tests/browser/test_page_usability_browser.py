"""In a real Chromium, at a phone (375x740) and a desktop (1280x800) width: what
test_accessibility_browser.py does not check. Targets a finger or an unsteady hand can hit
(24 px, WCAG 2.5.8), the API docs read on a phone, the security dashboard's numbers as text,
and a clear question before an action that cannot be undone."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.test_accessibility_browser import (
    CONTRAST,
    STRUCTURE,
    TIDY,
    _check_page,
    _seed,
)
from tests.support.browser import sign_in

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 800}

# Every control and every link that stands alone (a menu entry, "Back to sign in", a card's
# title) is at least 24x24 CSS px, measured where a pointer really lands (elementFromPoint
# near each edge). A link inside a sentence is exempt (WCAG 2.5.8 "inline").
TARGETS = """() => {
  const problems = [];
  const text = (el) => (el.textContent || '').replace(/\\s+/g, ' ').trim();
  const controls = document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, summary');
  for (const el of controls) {
    if (!el.getClientRects().length || el.closest('.visually-hidden, .skip-link')) continue;
    const style = getComputedStyle(el);
    if (el.tagName === 'A' && style.display === 'inline') {
      const block = el.parentElement.closest('p, li, td, th, dd, figcaption, caption, h1, h2, h3, div');
      if (block && text(block).length > text(el).length + 3) continue;  // in a sentence
    }
    el.scrollIntoView({block: 'center', inline: 'center'});
    // A link wrapped over two lines: its first line is a target of its own.
    const r = style.display === 'inline' ? el.getClientRects()[0] : el.getBoundingClientRect();
    const name = el.tagName + (el.id ? '#' + el.id : '') + ' "' + (text(el) || el.name || el.type).slice(0, 25) + '"';
    if (r.width < 24 || r.height < 24) {
      problems.push(`${name} is ${r.width.toFixed(0)}x${r.height.toFixed(0)}`);
      continue;
    }
    // The box is the target only if a click there lands on the control.
    const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
    for (const [x, y] of [[cx, cy - 11], [cx, cy + 11], [cx - 11, cy], [cx + 11, cy]]) {
      const hit = document.elementFromPoint(x, y);
      if (!hit || !(el.contains(hit) || (hit.tagName === 'LABEL' && hit.control === el))) {
        problems.push(`${name}: a click 11px from its centre lands on ${hit ? hit.tagName + '.' + hit.className : 'nothing'}`);
        break;
      }
    }
  }
  window.scrollTo(0, 0);
  return problems;
}"""

OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"

# The 2FA key typed by hand is shown in groups of four: a phone wraps it between groups,
# never inside one ("X6PL Z" / "AJ4 ..." read as two groups of the wrong length).
SECRET_GROUPS = """() => [...document.querySelectorAll('#totp-secret > span')]
  .filter((s) => s.getClientRects().length > 1).map((s) => s.textContent)"""
# ...and each line of it starts where the first does: the gap between groups belongs to the
# end of a line, or the group that opens the next one stands indented (" CACX AOIY").
SECRET_INDENT = """() => {
  const groups = [...document.querySelectorAll('#totp-secret > span')];
  const box = (s) => s.getBoundingClientRect();
  return groups.filter((s, i) => i > 0 && box(s).top > box(groups[i - 1]).top + 1
    && Math.abs(box(s).left - box(groups[0]).left) > 1).map((s) => s.textContent);
}"""

# One long word searched for and echoed in "No published article matches “…”": the empty
# state did not wrap it and the whole page scrolled sideways on a phone.
LONG_WORD = "Donaudampfschifffahrtsgesellschaftskapitän"

# API docs on a phone: every field table shows its rows whole, without scrolling inside
# its box, and stays a table (cells and column headers) to a screen reader.
API_TABLES = """() => [...document.querySelectorAll('.api-fields')].flatMap((t) => {
  const wrap = t.closest('.table-wrap');
  const name = (t.caption ? t.caption.textContent : t.getAttribute('aria-labelledby')).trim();
  const out = [];
  if (wrap.scrollWidth > wrap.clientWidth + 1) out.push(`${name}: scrolls ${wrap.scrollWidth - wrap.clientWidth}px sideways`);
  // A caption left a table box in a block table: "Parameters" stood one letter a line.
  if (t.caption && t.caption.getBoundingClientRect().width < wrap.clientWidth / 2) out.push(`${name}: its caption is ${t.caption.getBoundingClientRect().width.toFixed(0)}px wide`);
  for (const td of t.querySelectorAll('tbody td:last-child')) {
    if (td.textContent.trim() && td.getBoundingClientRect().width < 200) {
      out.push(`${name}: its description column is ${td.getBoundingClientRect().width.toFixed(0)}px wide`);
      break;
    }
  }
  return out;
})"""


def test_phone_and_desktop_pages_fit_and_have_targets_big_enough(
    live_server: Any, page: Any
) -> None:
    live = live_server()
    data = _seed(live)
    pg, watch = page
    pages = {
        "anonymous": [
            "/",
            "/articles",
            "/articles?page=99",
            f"/articles?q={LONG_WORD}",
            f"/articles/{data['article']}",
            f"/articles/{data['article']}?page=99",
            f"/u/{data['editor']}",
            "/auth/login",
            "/account",  # the sign-in page, saying "Please sign in to continue."
            "/auth/reset",
            "/auth/reset/not-a-token",  # two buttons side by side
            "/api/docs",
        ],
        "editor": [
            "/articles/new",
            f"/articles/{data['article']}/edit",
            "/account",
            "/account/avatar",
            "/account/tokens",
            "/account/2fa?next=/articles/new",
        ],
        "admin": [
            "/account",  # two-factor authentication on: two buttons to act with a code
            "/admin/users",
            f"/admin/users?q={LONG_WORD}",
            "/admin/users?q=reader&page=2",
            "/admin/users?page=99",
            "/admin/audit",
            "/admin/audit?page=999",
            "/admin/security",
            f"/admin/users/{data['member']}/delete",
        ],
    }
    # The state each of today's pages is listed for, so the list cannot check another one.
    shows = {
        f"anonymous /articles/{data['article']}?page=99": "There is no page 99 of comments.",
        "anonymous /account": "Please sign in to continue.",
        "anonymous /auth/reset/not-a-token": "This link is not valid any more",
        "admin /account": "New recovery codes",
        "editor /articles/new": "Images are added to a saved article",
        "editor /account/2fa?next=/articles/new": "Turn on two-factor authentication",
        "admin /admin/users?q=reader&page=2": "reader26",
        "admin /admin/users?page=99": "There is no page 99.",
        "admin /admin/audit?page=999": "There is no page 999 of these events.",
    }
    problems: list[str] = []
    for who, paths in pages.items():
        if who != "anonymous":
            pg.context.clear_cookies()
            sign_in(pg, live.url, data[who])
        for path in paths:
            for size in (PHONE, DESKTOP):
                pg.set_viewport_size(size)
                pg.goto(live.url + path)
                where = f"{who} {path} at {size['width']}px"
                said = shows.get(f"{who} {path}", "")
                if said not in pg.inner_text("main"):
                    problems.append(f"{where}: does not say {said!r}")
                if (overflow := pg.evaluate(OVERFLOW)) > 0:
                    problems.append(f"{where}: the page scrolls {overflow}px sideways")
                problems += [f"{where}: {p}" for p in pg.evaluate(TARGETS)]
                problems += [f"{where}: {p}" for p in pg.evaluate(TIDY)]
                problems += [f"{where}: the key's group {g!r} is split over two lines"
                             for g in pg.evaluate(SECRET_GROUPS)]
                problems += [f"{where}: the key's line opening with {g!r} is indented"
                             for g in pg.evaluate(SECRET_INDENT)]
    assert problems == [], "\n".join(problems)
    assert watch.csp_violations == []


def test_api_docs_read_on_a_phone(live_server: Any, page: Any) -> None:
    live = live_server()
    pg, watch = page
    pg.set_viewport_size(PHONE)
    pg.goto(live.url + "/api/docs")
    # Every table is named (a model's by its heading), headings in order, one h1...
    assert pg.evaluate(STRUCTURE) == []
    # ...its section links wrap instead of running off the screen...
    toc = pg.get_by_role("navigation", name="API sections")
    assert toc.evaluate(
        "(n) => n.scrollWidth <= n.clientWidth && n.getBoundingClientRect().right <= innerWidth"
    )
    # ...and the field tables show each row whole, as blocks a phone can read.
    assert pg.evaluate(API_TABLES) == []
    # A long word (BASTION_PUBLIC_PAGE_CACHE_SECONDS) wraps inside its card.
    spill = "() => [...document.querySelectorAll('.card p')].filter((p) => p.scrollWidth > p.clientWidth + 1).map((p) => p.textContent.slice(0, 40))"
    assert pg.evaluate(spill) == []
    model = pg.get_by_role("table", name="ArticleOut", exact=True)
    assert model.get_by_role("columnheader").count() == 4
    assert model.get_by_role("cell").count() >= 4
    # The little labels that say "Type" or "Required" on a phone are not read twice.
    assert pg.locator(".cell-label:not([aria-hidden=true])").count() == 0
    pg.set_viewport_size(DESKTOP)  # a real table again, with its header row in sight
    assert pg.locator(".api-fields thead").first.evaluate(
        "(h) => h.getBoundingClientRect().height > 20"
    )
    assert pg.locator(".cell-label").first.is_hidden()
    assert watch.csp_violations == []


def test_security_charts_have_their_numbers_as_text(live_server: Any, page: Any) -> None:
    from bastion.security import audit
    from tests.factories import UserFactory

    live = live_server()
    with live.app.app_context():
        admin = UserFactory(role_name="admin").username
        for _ in range(3):
            audit.record("login.failure")
        audit.record("csrf.failure")
    pg, watch = page
    pg.set_viewport_size(PHONE)
    pg.context.clear_cookies()
    sign_in(pg, live.url, admin)
    pg.goto(live.url + "/admin/security")
    failed = pg.locator("#chart-login-failure")
    # Folded away at first; a keyboard opens it.
    table = failed.get_by_role("table", name="Failed sign-ins", exact=False)
    assert table.count() == 0  # not in the accessibility tree while folded...
    assert failed.locator("table").count() == 1  # ...but there
    failed.get_by_role("group").locator("summary").focus()
    pg.keyboard.press("Enter")
    assert table.count() == 1 and table.is_visible()
    counts = [int(c) for c in table.locator("tbody td:last-child").all_inner_texts()]
    assert sum(counts) == 3, counts
    # Numbers in the text colour (the chart's own colour is for its bars), legible both ways.
    same = "(td) => getComputedStyle(td).color === getComputedStyle(document.body).color"
    assert table.locator("td").first.evaluate(same)
    for scheme in ("light", "dark"):
        pg.emulate_media(color_scheme=scheme)
        assert pg.evaluate(CONTRAST) == [], scheme
    assert pg.locator("#chart-csrf-failure .chart-data").count() == 1
    # A chart with nothing to show says so and offers no empty table.
    assert pg.locator("#chart-csp-report .chart-data").count() == 0
    assert pg.evaluate(STRUCTURE) == []
    # The charts' grid parts rows and columns by the same gap, not a second margin.
    pg.set_viewport_size(DESKTOP)
    gaps = pg.evaluate("""() => {
      const r = [...document.querySelectorAll('.chart')].map((f) => f.getBoundingClientRect());
      const below = r.find((b) => b.left === r[0].left && b.top > r[0].bottom);
      return [Math.round(r[1].left - r[0].right), Math.round(below.top - r[0].bottom)];
    }""")
    assert gaps[0] == gaps[1], gaps
    assert watch.csp_violations == []


def test_actions_that_cannot_be_undone_ask_first(live_server: Any, page: Any) -> None:
    from tests.factories import UserFactory
    from tests.uploads import corpus

    live = live_server()
    with live.app.app_context():
        username = UserFactory(role_name="editor").username
    pg, watch = page
    pg.set_viewport_size(PHONE)
    pg.context.clear_cookies()
    sign_in(pg, live.url, username)
    pg.goto(live.url + "/account/avatar")
    pg.set_input_files(
        "#avatar-image", {"name": "me.png", "mimeType": "image/png", "buffer": corpus.png()}
    )
    pg.get_by_role("button", name="Upload photo").click()
    pg.wait_for_load_state()
    assert pg.get_by_role("img", name="Your current profile photo").count() == 1
    # Refused (the fixture dismisses the question): the photo and the session stay.
    pg.get_by_role("button", name="Remove photo").click()
    pg.goto(live.url + "/account")
    pg.get_by_role("button", name="Sign out everywhere").click()
    pg.goto(live.url + "/account")
    assert pg.url.endswith("/account")  # still signed in
    assert pg.get_by_role("img", name="Your current profile photo").count() == 1
    assert watch.dialogs == [
        "Remove your profile photo? It is deleted, not kept.",
        "Sign out everywhere, this browser too, and revoke your personal access tokens?",
    ]
    assert watch.csp_violations == []


def _on_a_phone(pg: Any, where: str) -> list[str]:
    """The accessibility page checks, then at 375 px: no sideways scroll, targets big enough."""
    problems = _check_page(pg, where)
    pg.set_viewport_size(PHONE)
    if (overflow := pg.evaluate(OVERFLOW)) > 0:
        problems.append(f"{where}: the page scrolls {overflow}px sideways at 375px")
    problems += [f"{where} at 375px: {p}" for p in pg.evaluate(TARGETS)]
    pg.set_viewport_size(DESKTOP)
    return problems


def test_pages_reached_through_a_flow_fit_a_phone(live_server: Any, page: Any) -> None:
    """Pages only a flow reaches: the sign-in page that says why, forced 2FA enrolment
    that keeps the page asked for, the recovery codes leading on to it, an action form
    on page 2 of a search, and the 429 page of a refused form with its Back hint."""
    import pyotp

    from tests.factories import PASSWORD, ArticleFactory, UserFactory

    live = live_server(COMMENT_WRITE_RATE_LIMIT="1 per minute")
    with live.app.app_context():
        admin = UserFactory(role_name="admin", two_factor=False).username
        for i in range(27):
            UserFactory(username=f"reader{i:02}")
        article = ArticleFactory().id
    pg, watch = page
    # Every answer of 400 and more is the page itself (no stylesheet, script or image fails).
    failed: list[str] = []
    pg.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    pg.set_viewport_size(DESKTOP)
    base = live.url
    problems: list[str] = []

    pg.goto(f"{base}/admin/users?q=reader&page=2")
    assert "/auth/login?next=" in pg.url
    assert "Please sign in to continue." in pg.inner_text("main")
    problems += _on_a_phone(pg, "sign-in, asked to")
    pg.fill("#username", admin)
    pg.fill("#password", PASSWORD)
    pg.get_by_role("button", name="Sign in", exact=True).click()
    pg.wait_for_load_state()
    assert "/account/2fa?next=" in pg.url, pg.url
    problems += _on_a_phone(pg, "forced 2FA enrolment")
    secret = pg.inner_text("#totp-secret").strip()
    pg.fill("#code", pyotp.TOTP(secret).now())
    pg.get_by_role("button", name="Turn on two-factor authentication").click()
    pg.wait_for_load_state()
    onward = pg.get_by_role("link", name="I have saved them, continue", exact=True)
    assert onward.count() == 1
    problems += _on_a_phone(pg, "recovery codes, continue")
    onward.click()
    pg.wait_for_load_state()
    assert pg.url.endswith("/admin/users?q=reader&page=2"), pg.url
    problems += _on_a_phone(pg, "users, page 2 of a search")
    pg.get_by_role("button", name="Sign out everywhere: reader26").click()
    pg.wait_for_load_state()
    assert pg.url.endswith("/admin/users?q=reader&page=2"), pg.url  # the place is kept
    pg.get_by_role("link", name="Delete reader26", exact=True).click()
    pg.wait_for_load_state()
    problems += _on_a_phone(pg, "delete, from page 2 of a search")
    pg.get_by_role("link", name="Cancel", exact=True).click()
    pg.wait_for_load_state()
    assert pg.url.endswith("/admin/users?q=reader&page=2"), pg.url

    pg.goto(f"{base}/articles/{article}")
    for body in ("A first thought.", "A second thought."):
        pg.fill("#body", body)
        pg.get_by_role("button", name="Post comment").click()
        pg.wait_for_load_state()
    assert "Back button returns to the form" in pg.inner_text("main")
    problems += _on_a_phone(pg, "429 after a comment")
    assert problems == [], "\n".join(problems)
    assert failed == [f"429 {base}/articles/{article}/comments"]
    assert watch.console_errors == [
        "Failed to load resource: the server responded with a status of 429 (TOO MANY REQUESTS)"
    ]
    assert watch.csp_violations == []
