"""In a real Chromium: a second page view takes the stylesheet from the browser's cache."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest

pytestmark = pytest.mark.browser


def _counting(app: Callable[..., Iterable[bytes]], seen: Counter[str]) -> Callable[..., Any]:
    def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen[environ.get("PATH_INFO", "")] += 1
        return app(environ, start_response)

    return counted


def test_the_stylesheet_is_fetched_once_across_page_views(live_server, page) -> None:  # type: ignore[no-untyped-def]
    live = live_server()
    seen: Counter[str] = Counter()
    live.server.app = _counting(live.server.app, seen)  # what the server hands each request to
    pg, watch = page
    for path in ("/", "/articles", "/auth/login", "/"):
        assert pg.goto(live.url + path).status == 200
        bg = pg.evaluate("getComputedStyle(document.body).backgroundColor")
        assert bg not in ("", "rgba(0, 0, 0, 0)")  # the stylesheet applied every time
    assert seen["/"] == 2 and seen["/articles"] == 1
    # Flask's default (no-cache) would make the browser ask again on every page: four times.
    assert seen["/static/css/bastion.css"] == 1
    assert watch.csp_violations == [] and watch.console_errors == []
