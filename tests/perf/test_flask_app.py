"""BastionFlask remembers which hooks are plain functions, and changes nothing else."""

from __future__ import annotations

from typing import Any

import flask.app
import pytest
from flask import Flask

from bastion.flask_app import _MAX_REMEMBERED, BastionFlask


@pytest.fixture
def questions(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every function Flask asks ``iscoroutinefunction`` about."""
    asked: list[Any] = []
    real = flask.app.iscoroutinefunction

    def counting(func: Any) -> bool:
        asked.append(func)
        return real(func)

    monkeypatch.setattr(flask.app, "iscoroutinefunction", counting)
    return asked


def test_the_application_runs_on_bastion_flask(app: Flask) -> None:
    assert isinstance(app, BastionFlask)


def test_a_hook_is_asked_about_once_over_many_requests(make_app: Any, questions: list[Any]) -> None:
    client = make_app().test_client()  # a new app: nothing remembered yet
    client.get("/healthz")
    asked_first = len(questions)
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
    # Stock Flask asks about every hook and the view again on every request.
    assert asked_first > 0
    assert len(questions) == asked_first


def test_plain_functions_come_back_unchanged(questions: list[Any]) -> None:
    app = BastionFlask(__name__)

    def hook() -> None:
        return None

    assert app.ensure_sync(hook) is hook
    assert app.ensure_sync(hook) is hook
    assert questions == [hook]


def test_async_functions_are_handed_to_flask_every_time(questions: list[Any]) -> None:
    app = BastionFlask(__name__)

    async def view() -> str:
        return "done"

    try:
        expected = Flask(__name__).ensure_sync(view)()
    except RuntimeError as stock_refusal:  # Flask without its "async" extra
        with pytest.raises(RuntimeError, match=str(stock_refusal)[:20]):
            app.ensure_sync(view)
        with pytest.raises(RuntimeError):
            app.ensure_sync(view)
    else:
        assert app.ensure_sync(view)() == expected
        assert app.ensure_sync(view)() == expected
    assert questions.count(view) >= 2  # never remembered as plain


def test_unhashable_callables_are_served_without_remembering() -> None:
    class Handler:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> str:
            return "ok"

    app = BastionFlask(__name__)
    handler = Handler()
    assert app.ensure_sync(handler) is handler
    assert app.ensure_sync(handler)() == "ok"


def test_functions_made_per_call_are_not_remembered_past_the_bound() -> None:
    app = BastionFlask(__name__)
    made = []
    for n in range(_MAX_REMEMBERED + 50):

        def fresh(n: int = n) -> int:
            return n

        made.append(fresh)
        assert app.ensure_sync(fresh) is fresh
    assert len(app._plain_functions) == _MAX_REMEMBERED


@pytest.mark.parametrize(
    "cookie", [None, "", "a=1", "a=1; b=2", "__Host-session=x; a=\"q\\\"t\"", "café=1"]
)
def test_cookies_are_what_werkzeug_parses(app: Flask, cookie: str | None) -> None:
    """Without a Cookie header the request answers without walking its headers; with one,
    Werkzeug parses it: the same cookies as Werkzeug's own request either way."""
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request as WerkzeugRequest

    environ = EnvironBuilder(headers={"Cookie": cookie} if cookie is not None else {}).get_environ()
    ours = app.request_class(environ).cookies
    stock = WerkzeugRequest(environ).cookies
    assert type(ours) is type(stock)
    assert list(ours.items(multi=True)) == list(stock.items(multi=True))
