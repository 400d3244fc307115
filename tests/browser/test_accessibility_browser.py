"""In a real Chromium: the public pages work with a keyboard and a screen reader, read
well in light and dark colours and fit a 320 px screen (WCAG 2.2 AA, checked in the DOM)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser

# Structure a screen reader relies on; returns a list of problems (empty when all is well).
STRUCTURE = """() => {
  const problems = [];
  const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  const text = (el) => (el.textContent || '').replace(/\\s+/g, ' ').trim();
  const named = (el) => {
    const by = el.getAttribute('aria-labelledby');
    if (by) return by.split(/\\s+/).map((id) => text(document.getElementById(id) || document.createElement('i'))).join(' ').trim();
    return (el.getAttribute('aria-label') || '').trim();
  };
  if (!document.documentElement.lang) problems.push('html has no lang');
  const title = document.title.trim();
  if (!title || /^[\\s\\u00b7]*Bastion$/.test(title) || /^\\d+ \\u00b7/.test(title)) problems.push('title says nothing: ' + title);
  const h1s = [...document.querySelectorAll('h1')].filter(visible);
  if (h1s.length !== 1) problems.push(h1s.length + ' h1 elements');
  let last = 0;
  for (const h of document.querySelectorAll('h1, h2, h3, h4, h5, h6')) {
    const level = Number(h.tagName[1]);
    if (level > last + 1) problems.push('heading jumps to ' + h.tagName + ': ' + text(h));
    last = level;
  }
  if (document.querySelectorAll('main').length !== 1) problems.push('not one main landmark');
  const skip = document.querySelector('body a[href^="#"]');
  if (!skip || skip !== document.querySelector('a[href], button, input:not([type=hidden]), select, textarea, [tabindex]'))
    problems.push('the skip link is not the first focusable element');
  else if (!document.getElementById(skip.getAttribute('href').slice(1)) || document.getElementById(skip.getAttribute('href').slice(1)).tagName !== 'MAIN')
    problems.push('the skip link does not lead to main');
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    const label = [...(el.labels || [])].map(text).join(' ') || named(el);
    if (!label) problems.push('unlabelled ' + el.tagName + ' ' + (el.name || el.id));
  }
  for (const el of document.querySelectorAll('[aria-describedby]')) {
    for (const id of el.getAttribute('aria-describedby').split(/\\s+/)) {
      if (!document.getElementById(id)) problems.push('aria-describedby to missing #' + id);
    }
  }
  const ids = [...document.querySelectorAll('[id]')].map((el) => el.id);
  for (const id of new Set(ids.filter((id, i) => ids.indexOf(id) !== i))) problems.push('duplicate id ' + id);
  for (const img of document.querySelectorAll('img')) if (!img.hasAttribute('alt')) problems.push('img without alt ' + img.src);
  for (const svg of document.querySelectorAll('svg')) {
    if (svg.closest('[aria-hidden=true]')) continue;
    if (svg.getAttribute('role') !== 'img' || !named(svg)) problems.push('svg neither hidden nor a named image');
  }
  // Tables written in Markdown cannot have a caption; the site's own tables must.
  for (const table of document.querySelectorAll('table:not(.prose table)')) {
    if (!table.querySelector('th')) problems.push('table without header cells');
    if (!table.caption && !named(table)) problems.push('table without caption or name');
  }
  for (const a of document.querySelectorAll('a')) {
    const href = a.getAttribute('href');
    if (!href || href === '#' || href.startsWith('javascript:')) problems.push('link that is really a button: ' + text(a));
    if (!text(a) && !named(a) && !a.querySelector('img[alt]:not([alt=""])')) problems.push('link without a name ' + href);
  }
  for (const el of document.querySelectorAll('a[aria-label], button[aria-label]')) {
    // Label in name (2.5.3): someone who says what they see must reach the control.
    if (text(el) && !named(el).toLowerCase().includes(text(el).toLowerCase()))
      problems.push('aria-label "' + named(el) + '" hides the visible "' + text(el) + '"');
  }
  for (const a of document.querySelectorAll('header nav a:not(.brand)')) {
    if (a.pathname === location.pathname && a.getAttribute('aria-current') !== 'page')
      problems.push('the link to this page is not aria-current: ' + text(a));
  }
  for (const b of document.querySelectorAll('button')) {
    if (!text(b) && !named(b)) problems.push('button without a name');
    if (b.closest('a')) problems.push('button inside a link');
  }
  const navs = document.querySelectorAll('nav');
  for (const nav of navs) if (navs.length > 1 && !named(nav)) problems.push('unnamed nav among several');
  for (const flash of document.querySelectorAll('.flash')) {
    const region = flash.closest('[role=status], [role=alert], [aria-live]');
    if (!region) problems.push('flash outside a live region: ' + text(flash));
    else if (flash.classList.contains('flash-error') && region.getAttribute('role') !== 'alert')
      problems.push('error flash not in role=alert: ' + text(flash));
  }
  return problems;
}"""

# Text contrast against the first opaque background behind it (WCAG 1.4.3), also for
# placeholders; form field borders and the focus ring of the focused control (1.4.11).
CONTRAST = """() => {
  const rgb = (s) => { const m = s.match(/[\\d.]+/g); return m ? m.map(Number) : [0, 0, 0, 0]; };
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((acc, v, i) => acc + v * [0.2126, 0.7152, 0.0722][i], 0);
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const bgOf = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length < 4 || c[3] > 0.5) return c;
    }
    return rgb(getComputedStyle(document.documentElement).backgroundColor || 'rgb(255,255,255)');
  };
  const problems = [];
  const seen = new Set();
  for (const el of document.querySelectorAll('body *')) {
    if (!el.getClientRects().length || el.closest('svg')) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    const style = getComputedStyle(el);
    if (own && style.visibility !== 'hidden' && !el.closest('.skip-link:not(:focus)')) {
      const size = parseFloat(style.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
      const r = ratio(rgb(style.color), bgOf(el));
      const key = el.className + style.color + r.toFixed(2);
      if (r < (large ? 3 : 4.5) && !seen.has(key)) {
        seen.add(key);
        problems.push(`${el.tagName}.${el.className} "${el.textContent.trim().slice(0, 30)}" ${style.color} ${r.toFixed(2)}`);
      }
    }
    if (el.matches('input[placeholder]')) {
      const r = ratio(rgb(getComputedStyle(el, '::placeholder').color), bgOf(el));
      if (r < 4.5) problems.push(`placeholder of #${el.id} ${r.toFixed(2)}`);
    }
    if (el.matches('input:not([type=hidden]):not([type=checkbox]), textarea, select')) {
      const r = ratio(rgb(style.borderTopColor), bgOf(el.parentElement));
      if (r < 3) problems.push(`border of ${el.tagName}#${el.id} ${r.toFixed(2)}`);
    }
  }
  const circle = document.querySelector('svg.avatar circle');
  if (circle) {
    const r = ratio(rgb(getComputedStyle(circle).fill), rgb(getComputedStyle(document.querySelector('svg.avatar text')).fill));
    if (r < 3) problems.push('initials on their circle ' + r.toFixed(2));
  }
  return problems;
}"""

FOCUS_RING = """() => {
  const el = document.activeElement;
  const s = getComputedStyle(el);
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((acc, v, i) => acc + v * [0.2126, 0.7152, 0.0722][i], 0);
  let bg = [255, 255, 255];
  for (let e = el.parentElement; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length < 4 || c[3] > 0.5) { bg = c; break; }
  }
  const [x, y] = [lum(rgb(s.outlineColor)), lum(bg)].sort((p, q) => q - p);
  return {tag: el.tagName, cls: el.className, style: s.outlineStyle, width: parseFloat(s.outlineWidth),
          ratio: (x + 0.05) / (y + 0.05)};
}"""

# Neither the page scrolls sideways nor does content spill out of its column into the margin
# (wide tables and code scroll inside their own boxes).
OVERFLOW = """() => Math.max(
  document.documentElement.scrollWidth - document.documentElement.clientWidth,
  document.querySelector('main').scrollWidth - document.querySelector('main').clientWidth)"""

MOTION = """() => [...document.querySelectorAll('*')].filter((el) => {
  const s = getComputedStyle(el);
  return s.transitionDuration.split(',').some((d) => parseFloat(d) > 0.01)
    || s.animationName !== 'none' || s.scrollBehavior === 'smooth';
}).map((el) => el.tagName + '.' + el.className)"""


def _seed(live: Any) -> dict[str, Any]:
    """An editor with a display name, a page and a half of articles, one with comments;
    an admin, a disabled member with two-factor authentication and a long-named user."""
    from bastion.models.base import utcnow
    from tests.factories import ArticleFactory, CommentFactory, UserFactory

    with live.app.app_context():
        admin = UserFactory(role_name="admin")
        member = UserFactory(two_factor=True, disabled_at=utcnow())
        # Long names widen the admin's users table past 320 px: it must scroll in its box
        # (its visually hidden labels once stuck out of it and scrolled the whole page).
        UserFactory(username="a-rather-long-username-of-32-chs")
        # Hue 60 (yellow): the initials avatar colour that is hardest to read white on.
        editor = UserFactory(username="ada10", role_name="editor", display_name="Ada Lovelace")
        ArticleFactory.create_batch(20, author=editor)  # with the one below: two pages
        draft = ArticleFactory(author=editor, status="draft", published_at=None)
        # What Markdown may produce that could widen a page: a wide table, long code, a long word.
        cells = "".join(f"<td>cell{i}_{'x' * 30}</td>" for i in range(8))
        article = ArticleFactory(
            author=editor,
            body_html="<h2>Data</h2><table><thead><tr>" + "<th>head</th>" * 8 + "</tr></thead>"
            f"<tbody><tr>{cells}</tr></tbody></table><pre><code>{'y' * 300}</code></pre>"
            f"<p>{'z' * 200}</p>",
        )
        CommentFactory(article=article, body="First!\nSecond line.")
        CommentFactory(article=article, author=editor)
        return {
            "editor": editor.username,
            "article": article.id,
            "draft": draft.id,
            "admin": admin.username,
            "member": member.id,
        }


def _pages(data: dict[str, Any], who: str) -> list[str]:
    if who == "admin":
        return ["/admin/users", "/admin/security", f"/admin/users/{data['member']}/2fa-reset"]
    public = [
        "/",
        f"/articles/{data['article']}",
        "/articles",
        "/articles?q=Article",
        f"/u/{data['editor']}",
        "/auth/login",
        "/auth/register",
        "/auth/reset",
        "/no-such-page",
    ]
    editor = [f"/articles/{data['draft']}", "/articles/new", "/account"]
    return public + (editor if who == "editor" else [])


def _sign_in(pg: Any, base: str, username: str) -> None:
    import pyotp

    from tests.factories import PASSWORD, TOTP_SECRET

    pg.context.clear_cookies()
    pg.goto(base + "/auth/login")
    pg.fill("#username", username)
    pg.fill("#password", PASSWORD)
    pg.get_by_role("button", name="Sign in", exact=True).click()
    pg.wait_for_load_state()
    if pg.url.endswith("/auth/2fa"):
        pg.fill("#code", pyotp.TOTP(TOTP_SECRET).now())
        pg.get_by_role("button", name="Verify and sign in").click()
        pg.wait_for_load_state()


def test_pages_are_structured_labelled_legible_and_fit_320px(live_server: Any, page: Any) -> None:
    live = live_server()
    data = _seed(live)
    pg, watch = page
    problems: list[str] = []
    for who in ("anonymous", "editor", "admin"):
        if who != "anonymous":
            _sign_in(pg, live.url, data[who])
        for path in _pages(data, who):
            pg.set_viewport_size({"width": 1280, "height": 800})
            pg.emulate_media(color_scheme="light", reduced_motion="no-preference")
            pg.goto(live.url + path)
            where = f"{who} {path}"
            problems += [f"{where}: {p}" for p in pg.evaluate(STRUCTURE)]
            for scheme in ("light", "dark"):
                pg.emulate_media(color_scheme=scheme)
                problems += [f"{where} {scheme}: {p}" for p in pg.evaluate(CONTRAST)]
            pg.set_viewport_size({"width": 320, "height": 640})
            if (overflow := pg.evaluate(OVERFLOW)) > 0:
                problems.append(f"{where}: {overflow}px of horizontal scroll at 320px")
            pg.emulate_media(reduced_motion="reduce")
            problems += [f"{where}: moves despite reduced motion: {p}" for p in pg.evaluate(MOTION)]
    assert problems == [], "\n".join(problems)
    assert watch.csp_violations == []
    # A Markdown table that scrolls in its own box is still a table to a screen reader.
    pg.goto(f"{live.url}/articles/{data['article']}")
    assert pg.locator(".prose").get_by_role("table").get_by_role("columnheader").count() == 8
    pg.goto(live.url + "/articles")
    # Named by its words alone: a screen reader would read the arrow as "rightwards arrow".
    assert (
        pg.get_by_role("navigation", name="Pages")
        .get_by_role("link", name="Older", exact=True)
        .count()
        == 1
    )


def test_keyboard_reaches_content_first_with_a_visible_focus_ring(
    live_server: Any, page: Any
) -> None:
    live = live_server()
    pg, _ = page
    for scheme in ("light", "dark"):
        pg.emulate_media(color_scheme=scheme)
        pg.goto(live.url + "/auth/login")
        pg.keyboard.press("Tab")
        skip = pg.evaluate(
            "() => [document.activeElement.className, document.activeElement.getBoundingClientRect().left]"
        )
        assert skip[0] == "skip-link" and skip[1] >= 0, skip  # focused and on screen
        ring = pg.evaluate(FOCUS_RING)
        assert ring["style"] != "none" and ring["width"] >= 2 and ring["ratio"] >= 3, (scheme, ring)
        pg.keyboard.press("Enter")
        assert pg.evaluate("document.activeElement.id") == "main"
        # The next Tab goes into the content: the first field of the form.
        pg.keyboard.press("Tab")
        assert pg.evaluate("document.activeElement.id") == "username"
        ring = pg.evaluate(FOCUS_RING)
        assert ring["style"] != "none" and ring["width"] >= 2 and ring["ratio"] >= 3, (scheme, ring)
        pg.keyboard.press("Shift+Tab")
        pg.keyboard.press("Shift+Tab")
        ring = pg.evaluate(FOCUS_RING)
        assert ring["tag"] in ("A", "BUTTON") and ring["ratio"] >= 3, (scheme, ring)


def test_refused_forms_tie_each_error_to_its_field_and_announce_it(
    live_server: Any, page: Any
) -> None:
    live = live_server()
    pg, _ = page
    linked = """() => [...document.querySelectorAll('[aria-invalid=true]')].map((el) => [el.id,
        (el.getAttribute('aria-describedby') || '').split(/\\s+/).filter((id) => {
          const e = document.getElementById(id); return e && e.classList.contains('error') && e.textContent.trim();
        }).length])"""
    pg.goto(live.url + "/auth/register")
    pg.fill("#password", "short")  # the live length hint describes its field
    assert "password-live" in pg.get_attribute("#password", "aria-describedby").split()
    pg.fill("#username", "x")
    pg.fill("#email", "not-an-email")
    pg.get_by_role("button", name="Create account").click()
    pg.wait_for_load_state()
    fields = dict(pg.evaluate(linked))
    assert {"username", "email", "password"} <= set(fields), fields
    assert all(fields.values()), fields
    # Read first on arrival: the title says the page holds errors.
    assert pg.title().startswith("Error: "), pg.title()
    assert pg.locator(".error").count() == pg.locator("[aria-invalid=true]").count()

    pg.goto(live.url + "/auth/reset")
    pg.fill("#email", "nope")
    pg.get_by_role("button", name="Send the link").click()
    pg.wait_for_load_state()
    assert dict(pg.evaluate(linked)) == {"email": 1}
    assert pg.title().startswith("Error: ")

    # A refused sign-in names no field: the message itself is an alert.
    pg.goto(live.url + "/auth/login")
    pg.fill("#username", "nobody")
    pg.fill("#password", "wrong password entirely")
    pg.get_by_role("button", name="Sign in", exact=True).click()
    pg.wait_for_load_state()
    assert pg.locator(".flash-error[role=alert]").count() == 1
    assert pg.title().startswith("Error: ")
    assert pg.evaluate(STRUCTURE) == []
