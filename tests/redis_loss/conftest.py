"""What must survive Redis losing its data: the deployments run it without persistence, so
a restart or a flush empties it. Every test here runs the app on PostgreSQL and on a
private Redis server it may restart or flush without touching the shared one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from bastion.extensions import db, limiter
from tests.ops.processes import ThrowawayRedis


@pytest.fixture
def server(make_app: Callable[..., Flask]) -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis().start()
    try:
        yield server
    finally:
        server.stop()
        make_app()  # leave Flask-Limiter's shared instance on a store that exists


@pytest.fixture
def app(make_app: Callable[..., Flask], server: ThrowawayRedis) -> Iterator[Flask]:
    """The suite's ``app``, here on the private Redis."""
    app = make_app(backend="postgres", REDIS_URL=server.url)
    with app.app_context():
        limiter.reset()
        yield app
        db.session.remove()


@pytest.fixture(params=[ThrowawayRedis.restart, ThrowawayRedis.flush], ids=["restart", "flush"])
def forget(request: pytest.FixtureRequest) -> Callable[[ThrowawayRedis], None]:
    """Each way Redis loses everything: a restart, a FLUSHALL."""
    forget: Callable[[ThrowawayRedis], None] = request.param
    return forget
