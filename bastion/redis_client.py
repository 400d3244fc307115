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
            # No CLIENT SETINFO on connect: the Redis ACL (deploy/redis/users.acl) does not
            # allow it, and each refusal would be an ACL LOG entry hiding real ones.
            driver_info=None,
        )
        current_app.extensions["bastion.redis"] = client
    return client
