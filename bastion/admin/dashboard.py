"""Security dashboard: security events per hour or day, drawn as server-side SVG.

All series come from ONE grouped query over ``audit_events`` (event x time bucket); the
charts are plain SVG built by the template from the geometry computed here, so the page
needs no script at all and sits well inside the strict CSP.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from bastion.extensions import db
from bastion.models import AuditEvent, utcnow

# A wrong second-factor code is a failed sign-in too, and the more telling one (its password
# was right): it has its own chart beside the wrong passwords, as on the Grafana dashboard.
SERIES = (
    ("login.failure", "Failed sign-ins: wrong username or password"),
    ("login.2fa_failure", "Failed sign-ins: wrong 2FA code"),
    ("login.throttled", "Throttled sign-ins"),
    ("ratelimit.hit", "Rate-limited requests (429)"),
    ("csrf.failure", "CSRF failures"),
    ("csp.report", "CSP violation reports"),
)
# window name -> (length, bucket unit)
WINDOWS: dict[str, tuple[timedelta, str]] = {
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "day"),
    "30d": (timedelta(days=30), "day"),
    "90d": (timedelta(days=90), "day"),
}
DEFAULT_WINDOW = "24h"
# The drawing has no viewBox: it is as wide as its column, and its text is in CSS pixels at
# any width (scaled with a 360-unit drawing, the axis labels were 7 px in a desktop's three
# columns). Across, everything is a percentage of the width; down, pixels: room above the
# peak's line for its number, below the baseline for the time labels.
HEIGHT, TOP, BOTTOM = 168, 22, 24
# Under the hours' time labels, a row for their dates (see ``_ticks``).
DAY_ROW = 14
# A time label starts where its period does and runs right: none starts past this share of
# the width, so the last one fits a 320 px phone's chart (about 250 px wide).
LAST_TICK = 0.8
HOURS_PER_TICK = 6


@dataclass(frozen=True)
class Bar:
    x: float  # per cent of the width
    y: float  # px
    width: float  # per cent of the width
    height: float  # px
    label: str
    value: int


@dataclass(frozen=True)
class Tick:
    x: float  # per cent of the width
    label: str  # "06:00", or a day's "30 Nov"
    day: str = ""  # under an hour's label: its date, where the axis names a day


@dataclass(frozen=True)
class Chart:
    event: str
    title: str
    total: int
    peak: int
    bars: list[Bar]
    ticks: list[Tick]

    height: int = HEIGHT  # with DAY_ROW more when a tick names its day
    baseline: int = HEIGHT - BOTTOM
    top: int = TOP
    time_y: int = HEIGHT - 4
    day_y: int = HEIGHT - 4 + DAY_ROW


def _bucket_expr(unit: str) -> Any:
    """The UTC hour or day of an event as text, in the dialect's own functions."""
    col = AuditEvent.created_at
    if db.session.get_bind().dialect.name == "postgresql":
        return func.to_char(
            func.timezone("UTC", col), "YYYY-MM-DD HH24" if unit == "hour" else "YYYY-MM-DD"
        )
    return func.strftime("%Y-%m-%d %H" if unit == "hour" else "%Y-%m-%d", col)


def _bucket_keys(start: datetime, end: datetime, unit: str) -> list[tuple[str, str]]:
    """(key, short label) for every bucket in the window, so empty hours show as zero.

    A day of hours spans 25 buckets (the first and last are partial): hours of an earlier
    day carry their date, or "02:00" would name two different hours.
    """
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)
    current = start.replace(minute=0, second=0, microsecond=0)
    if unit == "day":
        current = current.replace(hour=0)
    keys = []
    while current <= end:
        if unit == "hour":
            label = current.strftime("%H:00" if current.date() == end.date() else "%d %b %H:00")
            keys.append((current.strftime("%Y-%m-%d %H"), label))
        else:
            keys.append((current.strftime("%Y-%m-%d"), current.strftime("%d %b")))
        current += step
    return keys


def counts(
    window: str, now: datetime | None = None
) -> tuple[dict[str, dict[str, int]], list[tuple[str, str]]]:
    """{event: {bucket: count}} for the window, from a single grouped query."""
    length, unit = WINDOWS[window]
    end = (now or utcnow()).astimezone(UTC)
    start = end - length
    bucket = _bucket_expr(unit).label("bucket")
    rows = db.session.execute(
        select(AuditEvent.event, bucket, func.count())
        .where(AuditEvent.event.in_([e for e, _ in SERIES]), AuditEvent.created_at >= start)
        .group_by(AuditEvent.event, bucket)
    ).all()
    result: dict[str, dict[str, int]] = {e: {} for e, _ in SERIES}
    for event, key, count in rows:
        result[event][str(key)] = int(count)
    return result, _bucket_keys(start, end, unit)


def _ticks(keys: list[tuple[str, str]], unit: str) -> list[tuple[int, str, str]]:
    """(bucket index, label, day) of the time axis: short labels, far enough apart for a phone.

    Hours are marked on the clock's quarters of a day, and the first mark and each midnight
    carry their date underneath. Midnight alone did not do: when the day began past the
    last mark (a window from 01:00 to 03:59), no mark said whether "06:00" was yesterday's
    or today's. Days are marked by every fourth of the window. The full label of each
    period stays on its bar and in the table of numbers.
    """
    n = len(keys)
    marks: list[tuple[int, str, str]] = []
    for i, (key, _) in enumerate(keys):
        if i > n * LAST_TICK:
            break
        if unit == "hour":
            moment = datetime.strptime(key, "%Y-%m-%d %H")
            if moment.hour % HOURS_PER_TICK == 0:
                day = moment.strftime("%d %b") if not marks or moment.hour == 0 else ""
                marks.append((i, moment.strftime("%H:00"), day))
        elif i % max(1, -(-n // 4)) == 0:
            marks.append((i, datetime.strptime(key, "%Y-%m-%d").strftime("%d %b"), ""))
    return marks


def _chart(
    event: str, title: str, values: dict[str, int], keys: list[tuple[str, str]], unit: str
) -> Chart:
    n = max(1, len(keys))
    peak = max([values.get(k, 0) for k, _ in keys] + [0])
    plot_h = HEIGHT - BOTTOM - TOP
    slot = 100 / n
    bars = []
    for i, (key, label) in enumerate(keys):
        value = values.get(key, 0)
        h = (value / peak * plot_h) if peak else 0.0
        bars.append(
            Bar(
                x=round(i * slot + slot * 0.1, 3),
                y=round(HEIGHT - BOTTOM - h, 2),
                width=round(slot * 0.8, 3),
                height=round(h, 2),
                label=label,
                value=value,
            )
        )
    ticks = [Tick(round(i * slot, 3), label, day) for i, label, day in _ticks(keys, unit)]
    return Chart(
        event=event,
        title=title,
        total=sum(b.value for b in bars),
        peak=peak,
        bars=bars,
        ticks=ticks,
        height=HEIGHT + (DAY_ROW if any(t.day for t in ticks) else 0),
    )


def security_charts(window: str = DEFAULT_WINDOW, now: datetime | None = None) -> list[Chart]:
    if window not in WINDOWS:
        window = DEFAULT_WINDOW
    data, keys = counts(window, now)
    unit = WINDOWS[window][1]
    return [_chart(event, title, data[event], keys, unit) for event, title in SERIES]
