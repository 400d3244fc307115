"""In a real Chromium: the public pages work with a keyboard and a screen reader, read
well in light and dark colours and fit a 320 px screen (WCAG 2.2 AA, checked in the DOM)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.browser import sign_in

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
  for (const el of document.querySelectorAll('input:not([type=hidden]):not([hidden]), select, textarea')) {
    const label = [...(el.labels || [])].map(text).join(' ') || named(el);
    if (!label) problems.push('unlabelled ' + el.tagName + ' ' + (el.name || el.id));
  }
  for (const el of document.querySelectorAll('[aria-describedby]')) {
    for (const id of el.getAttribute('aria-describedby').split(/\\s+/)) {
      if (!document.getElementById(id)) problems.push('aria-describedby to missing #' + id);
    }
  }
  // A title is a tooltip under a mouse, nothing to a keyboard (authors' Markdown aside).
  for (const el of document.querySelectorAll('body [title]:not(.prose [title])')) problems.push('information only in a title: ' + el.tagName + ' ' + text(el));
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

# What looks broken or unfinished though nothing scrolls sideways; a list of problems.
TIDY = """() => {
  const problems = [];
  const shown = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  const text = (el) => (el.textContent || '').replace(/\\s+/g, ' ').trim();
  // A Markdown table cell never splits a word over lines ("COLU/MN", "mor/e text" on a
  // phone): its words stay whole and the table scrolls in its box.
  for (const cell of document.querySelectorAll('.prose :is(th, td)')) {
    const range = document.createRange();
    range.selectNodeContents(cell);
    const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
    if (text(cell) && lines > text(cell).split(' ').length)
      problems.push(`table cell "${text(cell).slice(0, 20)}" splits a word over ${lines} lines`);
  }
  // Buttons side by side, or wrapped under each other, never touch ("Save" and "Cancel"
  // were 4 px apart; "New recovery codes" sat on "Turn off").
  const buttons = [...document.querySelectorAll('button, .button')].filter(shown);
  buttons.forEach((one, i) => buttons.slice(i + 1).forEach((two) => {
    const a = one.getBoundingClientRect(), b = two.getBoundingClientRect();
    const dx = Math.max(a.left, b.left) - Math.min(a.right, b.right);
    const dy = Math.max(a.top, b.top) - Math.min(a.bottom, b.bottom);
    if (dx < 6 && dy < 6) problems.push(`"${text(one)}" and "${text(two)}" are ${Math.max(dx, dy).toFixed(0)}px apart`);
  }));
  // A panel's or card's content starts and ends at its padding: no stray margin above a
  // first heading ("Images") or below a last paragraph. A panel stretched to its row in a
  // grid of several columns is only checked at the top.
  for (const box of document.querySelectorAll('.panel, .card')) {
    if (!shown(box)) continue;
    const s = getComputedStyle(box), r = box.getBoundingClientRect();
    const top = r.top + parseFloat(s.borderTopWidth) + parseFloat(s.paddingTop);
    const bottom = r.bottom - parseFloat(s.borderBottomWidth) - parseFloat(s.paddingBottom);
    const inner = [...box.querySelectorAll('*')]
      .filter((e) => shown(e) && getComputedStyle(e).position !== 'absolute')
      .map((e) => e.getBoundingClientRect());
    if (!inner.length) continue;
    const name = `${box.tagName}.${box.className} "${text(box).slice(0, 20)}"`;
    const above = Math.min(...inner.map((e) => e.top)) - top;
    if (above > 2) problems.push(`${name}: ${above.toFixed(0)}px of space above its content`);
    const grid = getComputedStyle(box.parentElement);
    if (grid.display === 'grid' && grid.gridTemplateColumns.split(' ').length > 1) continue;
    const below = bottom - Math.max(...inner.map((e) => e.bottom));
    if (below > 2) problems.push(`${name}: ${below.toFixed(0)}px of space below its content`);
  }
  // What follows a table stands apart from its last row ("Add an image" stuck to it).
  for (const wrap of [...document.querySelectorAll('.table-wrap')].filter(shown)) {
    const next = wrap.nextElementSibling;
    const gap = next && shown(next) ? next.getBoundingClientRect().top - wrap.getBoundingClientRect().bottom : 99;
    if (gap < 8) problems.push(`${next.tagName} "${text(next).slice(0, 20)}" is ${gap.toFixed(0)}px below a table`);
  }
  // A message above a narrow form (sign-in, 2FA) is as wide as the form, not the page.
  const narrow = document.querySelector('main > .narrow'), flashes = document.querySelector('main > .flashes');
  if (narrow && flashes && flashes.getBoundingClientRect().width > narrow.getBoundingClientRect().width + 1)
    problems.push('the message is wider than the form it is about');
  // A group of checkboxes looks like the other fields: its legend a label, no browser frame.
  for (const set of [...document.querySelectorAll('fieldset')].filter(shown)) {
    const legend = set.querySelector('legend');
    if (parseFloat(getComputedStyle(set).borderTopWidth) > 0) problems.push(`fieldset "${text(legend || set).slice(0, 20)}" in the browser's frame`);
    if (legend && Number(getComputedStyle(legend).fontWeight) < 600) problems.push(`legend "${text(legend)}" is not bold like a label`);
  }
  return problems;
}"""

MOTION = """() => [...document.querySelectorAll('*')].filter((el) => {
  const s = getComputedStyle(el);
  return s.transitionDuration.split(',').some((d) => parseFloat(d) > 0.01)
    || s.animationName !== 'none' || s.scrollBehavior === 'smooth';
}).map((el) => el.tagName + '.' + el.className)"""

# A refused form: the title says so, and each message is tied to its field (aria-invalid and
# aria-describedby; a group of checkboxes through its fieldset) or, naming none, is an alert.
REFUSED = """() => {
  const problems = [];
  const text = (el) => (el.textContent || '').replace(/\\s+/g, ' ').trim();
  const describes = (el) => (el.getAttribute('aria-describedby') || '').split(/\\s+/).some((id) => {
    const e = id && document.getElementById(id);
    return e && e.classList.contains('error') && text(e);
  });
  if (!document.title.startsWith('Error: ')) problems.push('the title does not say Error: ' + document.title);
  const shown = [...document.querySelectorAll('.error, .flash-error')].filter((e) => e.getClientRects().length);
  if (!shown.length) problems.push('no error shown');
  for (const e of shown) {
    if (e.closest('[role=alert]')) continue;
    if (!e.id || !document.querySelector(`[aria-describedby~="${e.id}"]`)) problems.push('error tied to no field: ' + text(e));
  }
  for (const box of document.querySelectorAll('.field-invalid')) {
    const group = box.tagName === 'FIELDSET';
    const owner = group ? box : box.querySelector('input:not([type=hidden]), textarea, select');
    if (!owner || !describes(owner)) problems.push('invalid field not described by its error: ' + text(box).slice(0, 40));
    else if (!group && owner.getAttribute('aria-invalid') !== 'true') problems.push('invalid field without aria-invalid: ' + owner.id);
  }
  for (const el of document.querySelectorAll('[aria-invalid=true]'))
    if (!describes(el)) problems.push('aria-invalid but described by no error: ' + el.id);
  return problems;
}"""

# A secret shown once must be readable whole on a small screen: wrapped, not cut off in its
# field nor spilling out of its box, and selectable.
WHOLE = """(selector) => {
  const problems = [];
  const els = document.querySelectorAll(selector);
  if (!els.length) problems.push('nothing matches ' + selector);
  for (const el of els) {
    const name = selector + ' "' + (el.value || el.textContent).slice(0, 10) + '"';
    const field = el.matches('input, textarea');
    if (field && (el.scrollWidth > el.clientWidth || el.scrollHeight > el.clientHeight)) problems.push(name + ' is cut off in its field');
    const box = (field ? el : el.parentElement).getBoundingClientRect();
    if (box.left < 0 || box.right > document.documentElement.clientWidth) problems.push(name + ' is partly off screen');
    for (const r of el.getClientRects()) if (r.left < box.left - 1 || r.right > box.right + 1) problems.push(name + ' spills out of its box');
    if (getComputedStyle(el).userSelect === 'none') problems.push(name + ' cannot be selected');
  }
  return problems;
}"""

SELECTED = """() => {
  const el = document.activeElement;
  return el && el.matches('input, textarea') ? el.value.slice(el.selectionStart, el.selectionEnd) : getSelection().toString();
}"""


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
        # A search two pages long (25 a page): page 2 keeps its place in each row's forms.
        for i in range(27):
            UserFactory(username=f"reader{i:02}")
        # Hue 60 (yellow): the initials avatar colour that is hardest to read white on.
        editor = UserFactory(username="ada10", role_name="editor", display_name="Ada Lovelace")
        ArticleFactory.create_batch(20, author=editor)  # with the one below: two pages
        draft = ArticleFactory(author=editor, status="draft", published_at=None)
        # What Markdown may produce that could widen a page: a wide table, long code, a long
        # word, deep nesting.
        cells = "".join(f"<td>cell{i}_{'x' * 30}</td>" for i in range(8))
        article = ArticleFactory(
            author=editor,
            # A summary is the article's first words, a long address among them: it wraps
            # in its card (the home page, the list and the profile scrolled 426 px sideways).
            summary="See https://example.org/" + "/".join(["segment"] * 20) + " for more.",
            body_html="<h2>Data</h2><table><thead><tr>" + "<th>head</th>" * 8 + "</tr></thead>"
            f"<tbody><tr>{cells}</tr></tbody></table><pre><code>{'y' * 300}</code></pre>"
            f"<p>{'z' * 200}</p>"
            # Lists and quotes nested as deep as markdown-it lets them (20 levels).
            + "<ul><li>" * 20
            + "deep"
            + "</li></ul>" * 20
            + "<blockquote><ul><li>" * 12
            + "quoted"
            + "</li></ul></blockquote>" * 12,
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
        return [
            "/admin/users",
            "/admin/security",
            f"/admin/users/{data['member']}/2fa-reset",
            f"/admin/users/{data['member']}/delete",
            "/account/delete",  # the last active admin: refused, with no form
            # Page 2 of a search and past-the-end pages, which link back to the last.
            "/admin/users?q=reader&page=2",
            "/admin/users?page=99",
            "/admin/audit?page=999",
        ]
    public = [
        "/",
        f"/articles/{data['article']}",
        f"/articles/{data['article']}?page=99",  # comments past the end
        "/articles",
        "/articles?q=Article",
        f"/u/{data['editor']}",
        "/auth/login",
        "/auth/register",
        "/auth/reset",
        "/no-such-page",
        "/account",  # the sign-in page, saying "Please sign in to continue."
    ]
    editor = [
        f"/articles/{data['draft']}",
        "/articles/new",
        "/account",
        "/account/2fa?next=/articles/new",
        "/account/delete",
    ]
    return public + (editor if who == "editor" else [])


def _desktop(pg: Any) -> None:
    pg.set_viewport_size({"width": 1280, "height": 800})
    pg.emulate_media(color_scheme="light", reduced_motion="no-preference")


def _check_page(pg: Any, where: str) -> list[str]:
    """Every check of the page as loaded: structure, a tidy layout, contrast in light and
    dark, 320 px width, reduced motion; leaves the page at desktop size in light colours."""
    problems = [f"{where}: {p}" for p in pg.evaluate(STRUCTURE)]
    problems += [f"{where}: {p}" for p in pg.evaluate(TIDY)]
    for scheme in ("light", "dark"):
        pg.emulate_media(color_scheme=scheme)
        problems += [f"{where} {scheme}: {p}" for p in pg.evaluate(CONTRAST)]
    pg.set_viewport_size({"width": 320, "height": 640})
    if (overflow := pg.evaluate(OVERFLOW)) > 0:
        problems.append(f"{where}: {overflow}px of horizontal scroll at 320px")
    problems += [f"{where} at 320px: {p}" for p in pg.evaluate(TIDY)]
    pg.emulate_media(reduced_motion="reduce")
    problems += [f"{where}: moves despite reduced motion: {p}" for p in pg.evaluate(MOTION)]
    _desktop(pg)
    return problems


def test_pages_are_structured_labelled_legible_and_fit_320px(live_server: Any, page: Any) -> None:
    live = live_server()
    data = _seed(live)
    pg, watch = page
    _desktop(pg)
    problems: list[str] = []
    for who in ("anonymous", "editor", "admin"):
        if who != "anonymous":
            pg.context.clear_cookies()
            sign_in(pg, live.url, data[who])
        for path in _pages(data, who):
            pg.goto(live.url + path)
            problems += _check_page(pg, f"{who} {path}")
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


def _submit(pg: Any, button: str, fields: dict[str, str] | None = None) -> None:
    for selector, value in (fields or {}).items():
        pg.fill(selector, value)
    pg.get_by_role("button", name=button, exact=True).click()
    pg.wait_for_load_state()


def _check_state(pg: Any, where: str, refused: bool = False) -> list[str]:
    """The page checks, and for a refused form how its errors are tied and announced."""
    problems = _check_page(pg, where)
    if refused:
        problems += [f"{where}: {p}" for p in pg.evaluate(REFUSED)]
    return problems


def _whole_and_selectable(pg: Any, selector: str, secret: str) -> list[str]:
    """At 320 px the secret is shown whole, and a triple click selects exactly it to copy."""
    pg.set_viewport_size({"width": 320, "height": 640})
    problems = [f"{selector}: {p}" for p in pg.evaluate(WHOLE, selector)]
    pg.locator(selector).first.click(click_count=3)
    if (selected := pg.evaluate(SELECTED).strip()) != secret:
        problems.append(f"{selector}: a triple click selects {selected!r}, not {secret!r}")
    _desktop(pg)
    return problems


def test_editor_settings_pages_in_each_state_a_user_sees(live_server: Any, page: Any) -> None:
    """Editing a comment, uploading a photo or an article image, API tokens (the new one
    shown once) and re-authentication: as first shown, refused and done."""
    from bastion.api import pats
    from tests.factories import ArticleFactory, CommentFactory, UserFactory
    from tests.uploads import corpus

    live = live_server()
    with live.app.app_context():
        editor = UserFactory(role_name="editor")
        article = ArticleFactory(author=editor)
        comment = CommentFactory(article=article, author=editor)
        # A long name without spaces: the tokens table scrolls in its box, not the page.
        pats.create(editor, name="nightly-backup-" + "x" * 60, scopes=["articles:read"])
        username, article_id, comment_id = editor.username, article.id, comment.id
    pg, watch = page
    base = live.url
    _desktop(pg)
    problems: list[str] = []

    image = {"name": "harbour-at-dawn.png", "mimeType": "image/png", "buffer": corpus.png()}
    pg.context.clear_cookies()
    sign_in(pg, base, username)
    pg.goto(f"{base}/comments/{comment_id}/edit")
    problems += _check_state(pg, "edit comment")
    _submit(pg, "Save", {"#body": ""})
    problems += _check_state(pg, "edit comment, empty", refused=True)
    for path, field, button in (
        ("/account/avatar", "#avatar-image", "Upload photo"),
        (f"/articles/{article_id}/images", "#article-image", "Upload image"),
    ):
        pg.goto(base + path)
        problems += _check_state(pg, path)
        _submit(pg, button)  # no file chosen
        problems += _check_state(pg, f"{path}, no file", refused=True)
        pg.set_input_files(field, image)
        _submit(pg, button)
        problems += _check_state(pg, f"{path}, uploaded")
    pg.goto(f"{base}/account/tokens")
    problems += _check_state(pg, "tokens")
    _submit(pg, "Create token", {"#name": ""})  # no name, no scope
    problems += _check_state(pg, "tokens, refused", refused=True)
    pg.fill("#name", "deploy script")
    pg.get_by_label("articles:read", exact=False).check()
    _submit(pg, "Create token")
    problems += _check_state(pg, "token created")
    secret = pg.locator("#new-token").input_value()
    assert secret.startswith("bst_")
    problems += _whole_and_selectable(pg, "#new-token", secret)
    pg.goto(f"{base}/account/delete")
    problems += _check_state(pg, "delete account")
    _submit(pg, "Delete my account and my content", {"#confirm": "someone-else"})
    problems += _check_state(pg, "delete account, wrong username", refused=True)
    pg.goto(f"{base}/auth/reauth")
    problems += _check_state(pg, "reauth")
    _submit(pg, "Continue")
    problems += _check_state(pg, "reauth, empty", refused=True)
    _submit(pg, "Continue", {"#password": "not the password"})
    problems += _check_state(pg, "reauth, wrong password", refused=True)
    assert problems == [], "\n".join(problems)
    assert watch.csp_violations == []


# Details an attacker can fill (a CSP report is anonymous): long words, markup, a bidi override.
HOSTILE_DETAILS = [
    {"blocked-uri": "http://evil.test/</code><script>alert(1)</script>" + "A" * 400},
    {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) " * 12, "note": "\u202egnp.exe\u200b"},
    {"document-uri": "http://127.0.0.1/" + "/".join(["segment"] * 60)},
]


def test_enrolment_and_audit_pages_in_each_state_a_user_sees(live_server: Any, page: Any) -> None:
    """An admin sets up two-factor authentication (QR code and key, a wrong code, the
    recovery codes), re-authenticates with a code and reads a hostile audit log."""
    import pyotp
    from playwright.sync_api import expect

    from bastion.security import audit
    from tests.factories import UserFactory

    live = live_server()
    with live.app.app_context():
        username = UserFactory(role_name="admin", two_factor=False).username
        for details in HOSTILE_DETAILS:
            audit.record("csp.report", details=details)
    pg, watch = page
    base = live.url
    _desktop(pg)
    problems: list[str] = []

    pg.context.clear_cookies()
    sign_in(pg, base, username)
    pg.goto(f"{base}/account/2fa")
    problems += _check_state(pg, "2fa setup")
    secret = pg.inner_text("#totp-secret").strip()
    # The QR code is an image named as such, described by the key it holds (typed by hand).
    qr = pg.get_by_role("img", name=re.compile("QR code"))
    expect(qr).to_have_count(1)
    expect(qr).to_have_accessible_description(re.compile(secret))
    problems += _whole_and_selectable(pg, "#totp-secret", secret)
    _submit(pg, "Turn on two-factor authentication", {"#code": "12345"})
    problems += _check_state(pg, "2fa setup, wrong code", refused=True)
    _submit(pg, "Turn on two-factor authentication", {"#code": pyotp.TOTP(secret).now()})
    problems += _check_state(pg, "recovery codes")
    codes = [c.strip() for c in pg.locator("#recovery-codes code").all_inner_texts()]
    assert len(codes) == 10
    problems += _whole_and_selectable(pg, "#recovery-codes code", codes[0])
    # Turning it off takes a code: a wrong one is refused on the account page, by its field.
    pg.goto(f"{base}/account")
    problems += _check_state(pg, "account with 2FA on")
    _submit(pg, "Turn off", {"#code": "000000"})
    problems += _check_state(pg, "account, wrong code to turn 2FA off", refused=True)
    pg.goto(f"{base}/auth/reauth")
    problems += _check_state(pg, "reauth with 2FA")
    _submit(pg, "Continue", {"#code": "123456"})  # no password
    problems += _check_state(pg, "reauth with 2FA, no password", refused=True)
    pg.goto(f"{base}/admin/audit")
    problems += _check_state(pg, "audit log")
    # Long details wrap in their cell: the table needs no sideways scroll on a desktop.
    wide = pg.locator(".table-wrap").evaluate("(w) => w.scrollWidth - w.clientWidth")
    if wide > 0:
        problems.append(f"audit log: the table scrolls {wide}px sideways at 1280px")
    # Refused filters stay on the form, each message by its field.
    pg.goto(f"{base}/admin/audit?since=yesterday&user={'x' * 100}")
    problems += _check_state(pg, "audit log, bad filters", refused=True)
    assert problems == [], "\n".join(problems)
    assert watch.csp_violations == []
