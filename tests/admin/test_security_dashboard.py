"""The security dashboard: counts per bucket from one grouped query, drawn as SVG."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import event

from bastion.admin import dashboard
from bastion.extensions import db
from bastion.models import AuditEvent, utcnow
from tests.factories import UserFactory
from tests.support.roles import client_for

TAG = re.compile(r"<[^>]+>")


def _events(name: str, count: int, hours_ago: float) -> None:
    when = utcnow() - timedelta(hours=hours_ago)
    db.session.add_all(AuditEvent(event=name, created_at=when) for _ in range(count))
    db.session.commit()


@pytest.mark.asvs("V16.3.3")
def test_counts_land_in_their_hour_from_a_single_query(app: Flask) -> None:
    _events("login.failure", 3, hours_ago=0)
    _events("login.failure", 2, hours_ago=5)
    _events("login.failure", 7, hours_ago=30)  # outside the 24 h window
    _events("csrf.failure", 1, hours_ago=2)
    _events("authz.denied", 9, hours_ago=1)  # not charted
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        charts = {c.event: c for c in dashboard.security_charts("24h")}
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len([s for s in statements if "audit_events" in s]) == 1
    failures = charts["login.failure"]
    assert failures.total == 5
    assert failures.peak == 3
    assert [b.value for b in failures.bars if b.value] == [2, 3]
    assert len(failures.bars) in (24, 25)
    assert charts["csrf.failure"].total == 1
    assert charts["csp.report"].total == 0


def test_daily_windows(app: Flask) -> None:
    _events("ratelimit.hit", 4, hours_ago=24 * 3)
    _events("ratelimit.hit", 1, hours_ago=24 * 20)
    week = {c.event: c for c in dashboard.security_charts("7d")}
    month = {c.event: c for c in dashboard.security_charts("30d")}
    assert week["ratelimit.hit"].total == 4
    assert month["ratelimit.hit"].total == 5
    assert len(month["ratelimit.hit"].bars) in (30, 31)


@pytest.mark.asvs("V3.4.3", "V16.3.3")
def test_page_draws_svg_charts_without_script(app: Flask) -> None:
    _events("csp.report", 2, hours_ago=1)
    client = client_for(app, UserFactory(role_name="admin"))
    html = client.get("/admin/security").get_data(as_text=True)
    assert html.count("<svg") >= 5
    # The only script is the one every signed-in page loads (history-guard.js), not charts'.
    assert html.count("<script") == 1 and "js/history-guard.js" in html
    assert "CSP violation reports" in html
    assert "2 in the last 24h" in html
    assert "Nothing recorded in this window." in html
    for window in ("7d", "30d", "90d", "bogus"):
        assert client.get(f"/admin/security?window={window}").status_code == 200


@pytest.mark.parametrize("window", sorted(dashboard.WINDOWS))
def test_every_bucket_of_a_window_has_its_own_label(app: Flask, window: str) -> None:
    """The day of hours has 25 buckets (partial ones at both ends): both ends were
    labelled "02:00", on the axis and in the table of numbers."""
    from datetime import UTC, datetime

    now = datetime(2026, 11, 30, 2, 35, tzinfo=UTC)
    _, keys = dashboard.counts(window, now=now)
    labels = [label for _, label in keys]
    assert len(set(labels)) == len(labels)
    if window == "24h":
        assert labels[0] == "29 Nov 02:00" and labels[-1] == "02:00"


# Where a day of hours may begin: on every hour, and inside the hours whose axis named no
# day at all (01:00 to 03:59: the first midnight came past the last mark).
START_TIMES = [f"{hour:02d}:00" for hour in range(24)] + ["01:30", "03:59"]


@pytest.mark.parametrize("start", START_TIMES)
def test_the_axis_of_a_day_of_hours_names_the_day_of_every_mark(app: Flask, start: str) -> None:
    """A mark's day is the last date read at or before it on the axis. From 02:00 the
    marks read "06:00", "12:00", "18:00": yesterday's hours or today's, the axis did not say."""
    from datetime import UTC, date, datetime, time

    begin = datetime.combine(date(2026, 11, 30), time.fromisoformat(start), UTC)
    chart = dashboard.security_charts("24h", now=begin + timedelta(hours=24))[0]
    first_hour = begin.replace(minute=0)
    slot = 100 / len(chart.bars)
    assert chart.ticks
    day = ""
    for tick in chart.ticks:
        hour = first_hour + timedelta(hours=round(tick.x / slot))
        day = tick.day or day
        assert day, f"no day named at or before {tick.label}"
        assert f"{day} {tick.label}" == hour.strftime("%d %b %H:00")
    assert chart.time_y < chart.day_y < chart.height  # the dates inside the drawing


def _wrong_code() -> str:
    """A six-digit code the factories' authenticator shows at no accepted time step."""
    import time

    import pyotp

    from tests.factories import TOTP_SECRET

    totp = pyotp.TOTP(TOTP_SECRET)
    step = totp.timecode(time.time())
    accepted = {totp.generate_otp(s) for s in range(step - 2, step + 3)}
    return next(c for n in range(1_000_000) if (c := f"{n:06d}") not in accepted)


@pytest.mark.asvs("V16.3.1")
def test_a_wrong_code_at_the_second_step_shows_on_the_dashboard(app: Flask) -> None:
    """A wrong 2FA code is a failed sign-in, and the telling one: its password was right.
    "Failed sign-ins" counted only wrong passwords; the code step failed unseen."""
    from tests.factories import PASSWORD
    from tests.support.accounts import post_form

    UserFactory(username="carol", role_name="editor", two_factor=True)
    client = app.test_client()
    first = post_form(client, "/auth/login", {"username": "carol", "password": PASSWORD})
    assert first.headers["Location"] == "/auth/2fa"
    refused = post_form(client, "/auth/2fa", {"code": _wrong_code()})
    assert refused.status_code == 200 and "carol" not in refused.get_data(as_text=True)

    admin = client_for(app, UserFactory(role_name="admin"))
    page = admin.get("/admin/security").get_data(as_text=True)
    figure = re.search(r'<figure[^>]*id="chart-login-2fa_failure".*?</figure>', page, re.S)
    assert figure, "no figure for wrong second-factor codes"
    caption = TAG.sub("", re.search(r"<figcaption>(.*?)</figcaption>", figure[0], re.S)[1])
    assert " ".join(caption.split()) == (
        "Failed sign-ins: wrong 2FA code 1 in the last 24h, peak 1"
    )
    # Beside the wrong passwords, whose count it does not change.
    order = [m[1] for m in re.finditer(r'<figure[^>]*id="chart-([^"]+)"', page)]
    assert order[:2] == ["login-failure", "login-2fa_failure"]
    assert "Failed sign-ins: wrong username or password</strong> <span class=\"meta\">0 in" in page
