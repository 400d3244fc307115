"""Fixtures for operations tests: a migrated PostgreSQL schema and a Redis key prefix that
several real server processes share."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import base_config, build_app
from tests.support import services

USERS = ("alice", "bob", "carol")


@dataclass(frozen=True)
class SharedState:
    """Where every instance of one deployment keeps its state."""

    database_url: str
    redis_url: str
    redis_prefix: str

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "BASTION_DATABASE_URL": self.database_url,
            "BASTION_REDIS_URL": self.redis_url,
            "BASTION_RATELIMIT_KEY_PREFIX": self.redis_prefix,
            "BASTION_REDIS_PREFIX": self.redis_prefix,
            **extra,
        }

    def clear_limits(self) -> None:
        services.redis_delete_prefix(self.redis_url, self.redis_prefix)


@pytest.fixture(scope="session")
def shared_state(
    pg_schema_url: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedState]:
    """A PostgreSQL schema built by the real migrations, with three viewers, and Redis."""
    redis_url = os.environ.get("BASTION_TEST_REDIS", "redis://127.0.0.1:6379/0")
    if not services.redis_reachable(redis_url):
        pytest.skip("Redis is not reachable at 127.0.0.1:6379")
    url = pg_schema_url()
    tmp: Path = tmp_path_factory.mktemp("ops-db")
    app = build_app(base_config(tmp, url), migrate=True)
    from bastion.extensions import db
    from tests.factories import UserFactory

    with app.app_context():
        for name in USERS:
            UserFactory(username=name)
        db.engine.dispose()
    state = SharedState(url, redis_url, f"bastion-ops-{uuid.uuid4().hex[:10]}")
    yield state
    state.clear_limits()
