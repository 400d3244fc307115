"""SQL injection: sqlmap against the article search on PostgreSQL finds nothing.

Bounded: batch mode, level 2 / risk 1, boolean, error, union and time-based techniques,
a short time delay and a hard timeout, so it fits the suite's time budget. The same scan
against a deliberately injectable endpoint shows it would find a real flaw.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask, request

pytestmark = [pytest.mark.slow]
TIMEOUT_S = 150
FOUND = "identified the following injection point"


def _sqlmap() -> list[str]:
    exe = Path(sys.executable).with_name("sqlmap")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("sqlmap")
    assert found, "sqlmap is part of the dev requirements"
    return [found]


def _scan(url: str, output_dir: Path) -> str:
    from tests.support.roles import rate_limits_off

    cmd = [
        *_sqlmap(), "-u", url, "-p", "q",
        "--batch", "--level", "2", "--risk", "1", "--technique", "BEUT",
        "--time-sec", "2", "--threads", "2", "--flush-session", "--disable-coloring",
        "--output-dir", str(output_dir),
    ]  # fmt: skip
    with rate_limits_off():  # thousands of requests from one address, on purpose
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    return result.stdout + result.stderr


@pytest.mark.postgres
@pytest.mark.asvs("V1.2.4", "V2.2.1")
def test_sqlmap_finds_no_injection_in_search(live_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import ArticleFactory

    live = live_server(backend="postgresql")
    with live.app.app_context():
        for title in ("Security notes", "Flask tips", "Testing with sqlmap"):
            ArticleFactory(title=title)
    out = _scan(f"{live.url}/articles?q=Flask", tmp_path / "sqlmap")
    assert "all tested parameters do not appear to be injectable" in out, out[-3000:]
    assert FOUND not in out


def _injectable_app(db_path: Path) -> Flask:
    """A search written the wrong way (SQL built by string formatting), as a control."""
    con = sqlite3.connect(db_path)
    con.execute("CREATE TABLE a (t TEXT)")
    con.executemany("INSERT INTO a VALUES (?)", [("Flask tips",), ("Security notes",)])
    con.commit()
    app = Flask("injectable")

    @app.get("/articles")
    def articles() -> tuple[str, int]:
        q = request.args.get("q", "")
        try:
            rows = (
                sqlite3.connect(db_path)
                .execute(
                    f"SELECT t FROM a WHERE t LIKE '%{q}%'"  # noqa: S608 - the flaw under test
                )
                .fetchall()
            )
        except sqlite3.Error:
            return "error", 500
        return "<ul>" + "".join(f"<li>{r[0]}</li>" for r in rows) + "</ul>", 200

    return app


def test_the_same_scan_finds_a_real_injection(tmp_path: Path) -> None:
    from tests.support.browser import serve

    live = serve(_injectable_app(tmp_path / "flawed.db"))
    try:
        out = _scan(f"{live.url}/articles?q=Flask", tmp_path / "sqlmap")
    finally:
        live.stop()
    assert FOUND in out, out[-3000:]
