"""SQL injection: sqlmap against the article search on PostgreSQL finds nothing.

Bounded: batch mode, level 2 / risk 1, boolean, error, union and time-based techniques,
a short time delay and a hard timeout, so it fits the suite's time budget.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
TIMEOUT_S = 150


def _sqlmap() -> list[str]:
    exe = Path(sys.executable).with_name("sqlmap")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("sqlmap")
    assert found, "sqlmap is part of the dev requirements"
    return [found]


@pytest.mark.asvs("V1.2.4", "V2.2.1")
def test_sqlmap_finds_no_injection_in_search(live_server, tmp_path: Path, pg_base_url: str) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import ArticleFactory
    from tests.support.roles import rate_limits_off

    live = live_server(backend="postgresql")
    with live.app.app_context():
        for title in ("Security notes", "Flask tips", "Testing with sqlmap"):
            ArticleFactory(title=title)
    cmd = [
        *_sqlmap(),
        "-u",
        f"{live.url}/articles?q=Flask",
        "-p",
        "q",
        "--batch",
        "--level",
        "2",
        "--risk",
        "1",
        "--technique",
        "BEUT",
        "--time-sec",
        "2",
        "--threads",
        "2",
        "--flush-session",
        "--disable-coloring",
        "--output-dir",
        str(tmp_path / "sqlmap"),
    ]
    with rate_limits_off():  # thousands of requests from one address, on purpose
        result: Any = subprocess.run(
            cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    out = result.stdout + result.stderr
    assert "all tested parameters do not appear to be injectable" in out, out[-3000:]
    assert "identified the following injection point" not in out
    assert "appears to be injectable" not in out.replace("do not appear to be injectable", "")
