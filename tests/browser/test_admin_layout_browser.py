"""The admin area's security dashboard and audit trail in Chromium, read at a desktop
(1280 px) and on phones (375 and 320 px): what the charts and the table show, and where."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.support.browser import sign_in

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}
SMALL_PHONE = {"width": 320, "height": 640}

# Each text of every chart at the size it is drawn (its font size times the drawing's
# scale), and the time labels (and the dates under them) that stick out of their drawing
# or run into the next one.
CHART_TEXT = """() => {
  const problems = [];
  for (const svg of document.querySelectorAll('.chart-svg')) {
    const box = svg.getBoundingClientRect();
    const name = svg.closest('figure').id;
    for (const t of svg.querySelectorAll('text')) {
      const px = parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a;
      if (px < 11) problems.push(`${name} "${t.textContent}" is ${px.toFixed(1)}px`);
    }
    if (!svg.querySelector('.chart-time')) problems.push(`${name} has no time labels`);
    for (const row of ['.chart-time', '.chart-day']) {
      const labels = [...svg.querySelectorAll(row)].map((t) => [t.textContent, t.getBoundingClientRect()]);
      labels.forEach(([label, r], i) => {
        if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.bottom > box.bottom + 0.5) problems.push(`${name} "${label}" sticks out`);
        const next = labels[i + 1];
        if (next && r.right + 4 > next[1].left) problems.push(`${name} "${label}" runs into "${next[0]}"`);
      });
    }
  }
  return problems;
}"""

# The baselines of charts side by side, row by row (charts whose boxes start level).
BASELINES = """() => {
  const rows = {};
  for (const fig of document.querySelectorAll('.chart')) {
    const top = Math.round(fig.getBoundingClientRect().top);
    const base = fig.querySelector('.chart-baseline').getBoundingClientRect().top;
    (rows[top] = rows[top] || []).push([fig.id, base]);
  }
  return Object.values(rows);
}"""


@pytest.mark.parametrize("window", ["24h", "7d", "90d"])
def test_security_charts_are_legible_at_every_width_and_level_side_by_side(
    live_server: Any, page: Any, window: str
) -> None:
    """At a desktop, three charts a row drew their 9-unit labels at 7 px; a caption of
    three lines beside one of a single line set the neighbours' baselines apart."""
    from bastion.security import audit
    from tests.factories import UserFactory

    live = live_server()
    with live.app.app_context():
        admin = UserFactory(role_name="admin").username
        for _ in range(3):
            audit.record("login.failure")  # a long caption, over three lines
        audit.record("csp.report")  # beside an empty chart of a one-line caption
    pg, watch = page
    sign_in(pg, live.url, admin)
    for size in (DESKTOP, PHONE, SMALL_PHONE):
        pg.set_viewport_size(size)
        pg.goto(f"{live.url}/admin/security?window={window}")
        assert pg.evaluate(CHART_TEXT) == [], size
        assert pg.evaluate("() => document.documentElement.scrollWidth <= innerWidth"), size
    pg.set_viewport_size(DESKTOP)
    pg.goto(f"{live.url}/admin/security?window={window}")
    rows = pg.evaluate(BASELINES)
    assert [len(row) for row in rows] == [3, 3]  # a desktop's two rows of three
    for row in rows:
        assert max(b for _, b in row) - min(b for _, b in row) < 0.5, row
    assert watch.csp_violations == []


# Lines a cell's text takes (its content's height over its line height).
CELL_LINES = """(cells) => cells.map((cell) => {
  const range = document.createRange();
  range.selectNodeContents(cell);
  const s = getComputedStyle(cell);
  const line = parseFloat(s.lineHeight) || parseFloat(s.fontSize) * 1.6;
  return [cell.className, cell.textContent.trim(), Math.round(range.getBoundingClientRect().height / line)];
})"""


def _seed_trail(app: Any) -> str:
    """An admin and a trail as a busy day leaves it: the longest event name, IPv4 and IPv6
    addresses, a 32-character username, short details and a CSP report's long ones."""
    from bastion.extensions import db
    from bastion.models import AuditEvent, utcnow
    from tests.factories import UserFactory

    with app.app_context():
        admin = UserFactory(role_name="admin", username="boss")
        member = UserFactory(username="a-rather-long-username-of-32-chs")
        now = utcnow()
        rows = [
            AuditEvent(event="2fa.recovery_codes_regenerated", actor_id=member.id,
                       target_user_id=member.id, ip="2001:db8:85a3:1234:5678:8a2e:370:7334",
                       details={"remaining": 10}),
            # The longest event name beside a full IPv6 address and words in the details.
            AuditEvent(event="2fa.recovery_codes_regenerated", actor_id=member.id,
                       target_user_id=member.id, ip="2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                       details={"remaining": 10, "reason": "asked for a new set of codes"}),
            AuditEvent(event="csp.report", ip="198.51.100.200", details={
                "blocked-uri": "https://cdn.example.org/" + "asset/" * 30,
                "violated-directive": "script-src-elem"}),
        ] + [
            AuditEvent(event="login.failure", ip="203.0.113.77", target_user_id=admin.id,
                       details={"known": True, "login": "boss"}) for _ in range(5)
        ] + [
            AuditEvent(event="user.role_changed", actor_id=admin.id, target_user_id=admin.id,
                       ip="255.255.255.255", details={"from": "viewer", "to": "editor"}),
        ]
        for i, row in enumerate(rows):
            row.created_at = now + timedelta(seconds=i)
            row.request_id = f"{i:032x}"
        db.session.add_all(rows)
        db.session.commit()
        return admin.username


def _audit_at_a_desktop(live_server: Any, page: Any) -> tuple[Any, Any, Any]:
    """The seeded trail's audit page, signed in as its admin, at 1280 px: the live server,
    the page and its CSP watch."""
    live = live_server()
    admin = _seed_trail(live.app)
    pg, watch = page
    sign_in(pg, live.url, admin)
    pg.set_viewport_size(DESKTOP)
    pg.goto(f"{live.url}/admin/audit")
    return live, pg, watch


def test_audit_rows_read_on_one_line_at_a_desktop_and_as_blocks_on_a_phone(
    live_server: Any, page: Any
) -> None:
    """At 1280 px the table squeezed every column to fit the longest details: "boss #1"
    took two lines, and the request ids ran off the right edge. On a phone it scrolled
    sideways, one timestamp and half an event name in sight."""
    live, pg, watch = _audit_at_a_desktop(live_server, page)
    wrap = pg.locator(".table-wrap")
    assert wrap.evaluate("(w) => w.scrollWidth - w.clientWidth") <= 0
    cells = pg.locator(".audit-table tbody td").evaluate_all(CELL_LINES)
    # Times, events and request ids never wrap; short names and any IPv4 address neither.
    wrapped = [c for c in cells if c[2] > 1 and "audit-details" not in c[0]
               and not ("a-rather-long" in c[1] or c[1].startswith("2001:"))]
    assert wrapped == []
    assert any(c[2] > 1 for c in cells if "audit-details" in c[0])  # the CSP report's
    for size in (PHONE, SMALL_PHONE):
        pg.set_viewport_size(size)
        pg.goto(f"{live.url}/admin/audit")
        assert pg.evaluate("() => document.documentElement.scrollWidth <= innerWidth"), size
        assert wrap.evaluate("(w) => w.scrollWidth - w.clientWidth") <= 0, size
        # Every row's time and event are in sight, on the row's first lines.
        right = wrap.evaluate("(w) => w.getBoundingClientRect().right")
        for cls in ("audit-time", "audit-event", "audit-ip", "audit-request"):
            edges = pg.locator(f".audit-table .{cls}").evaluate_all(
                "(cells) => cells.map((c) => c.getBoundingClientRect().right)")
            assert max(edges) <= right + 0.5, (size, cls)
        # The column names stay for screen readers; the labels in sight are not read twice.
        assert pg.get_by_role("columnheader", name="Actor").count() == 1
        label = pg.locator(".audit-ip").first.evaluate(
            "(c) => getComputedStyle(c, '::before').content")
        assert label.startswith('"IP "') and label.endswith('/ ""'), label
    assert watch.csp_violations == []


# A cell's lines as text, read from where each of its characters is drawn.
TEXT_LINES = """(cell) => {
  const lines = [];
  let top = null;
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.length; i++) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const rect = range.getBoundingClientRect();
      if (!rect.width) continue;
      if (top === null || rect.top > top + 1) { lines.push(''); top = rect.top; }
      lines[lines.length - 1] += node.data[i];
    }
  }
  return lines;
}"""

# The room a cell gives its text, and the width of 20 characters in the font of that text.
DETAILS_ROOM = """(cell) => {
  const s = getComputedStyle(cell);
  const code = cell.querySelector('code');
  const ctx = document.createElement('canvas').getContext('2d');
  ctx.font = getComputedStyle(code).font;
  return [parseFloat(s.paddingLeft) + parseFloat(s.paddingRight), ctx.measureText('0'.repeat(20)).width];
}"""


def test_audit_details_keep_twenty_characters_beside_a_full_ipv6_address(
    live_server: Any, page: Any
) -> None:
    """At 1280 px the details of a row with the longest event name, 32-character names and
    a full IPv6 address got what the other columns left: under 20 characters, a word or
    two a line. The address broke wherever its column ended ("2001:db8:85a3:1" / "234:...")."""
    _live, pg, watch = _audit_at_a_desktop(live_server, page)
    row = pg.locator(".audit-table tbody tr", has_text="0370:7334")
    details = row.locator(".audit-details")
    box = details.bounding_box()
    assert box is not None
    padding, twenty = details.evaluate(DETAILS_ROOM)
    assert box["width"] - padding >= twenty - 0.5, (box["width"] - padding, twenty)
    # Addresses break between their groups, never inside one.
    for cell in pg.locator(".audit-table .audit-ip").all():
        lines = cell.evaluate(TEXT_LINES)
        assert all(line.endswith(":") for line in lines[:-1]), lines
    # Nothing sticks out of its cell, of the table's box, or of the page.
    assert pg.evaluate("() => document.documentElement.scrollWidth <= innerWidth")
    wrap = pg.locator(".table-wrap")
    assert wrap.evaluate("(w) => w.scrollWidth - w.clientWidth") <= 0
    right = wrap.evaluate("(w) => w.getBoundingClientRect().right")
    overflowing = pg.locator(".audit-table td").evaluate_all(
        "(cells) => cells.filter((c) => c.scrollWidth > c.clientWidth).map((c) => c.textContent)")
    assert overflowing == []
    edges = pg.locator(".audit-table td").evaluate_all(
        "(cells) => cells.map((c) => c.getBoundingClientRect().right)")
    assert max(edges) <= right + 0.5
    assert watch.csp_violations == []
