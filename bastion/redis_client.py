"""One shared Redis client per process, with bounded timeouts."""

from __future__ import annotations

import redis
from flask import current_app


def get_redis() -> redis.Redis:
    client = current_app.extensions.get("bastion.redis")
    if client is None:
        client = redis.Redis.from_url(
            current_app.config["REDIS_URL"],
            socket_connect_timeout=1,
            socket_timeout=1,
            health_check_interval=30,
        )
        current_app.extensions["bastion.redis"] = client
    return client
