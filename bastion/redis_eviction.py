"""Production start-up refuses a Redis that may evict keys (``maxmemory-policy``).

Every key Bastion keeps in Redis has a TTL and must live until it ends: rate-limit windows,
sign-in throttle counters, revoked-token entries beside the marker that says Redis holds
them all, spent 2FA markers. A policy other than ``noeviction`` lets Redis delete them when
memory runs short, without an error to anyone: limits restart, a revoked token passes
again. ``noeviction`` answers writes with an error instead, which the app handles as an
outage (docs/security.md, "Sessions", lists the key families).

The policy is read with ``INFO memory``: managed services often refuse ``CONFIG GET``, and
least-privilege ACLs refuse ``INFO`` too (one of Redis' dangerous commands), so a policy
that cannot be read is a warning, not a refusal; neither is Redis being down, which the
app survives (``readyz`` and the rate limiter say so). The compose deployment's ACL refuses
``INFO`` and its Redis is started with ``noeviction``: it turns the check off
(``BASTION_REDIS_POLICY_CHECK=off``) rather than leave a refused command in Redis' ACL LOG,
where an operator looks for an attacker's probing, at every worker start.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import redis
from flask import Flask

from bastion.config import refusal

log = logging.getLogger(__name__)

SAFE_POLICY = "noeviction"


def eviction_problem(policy: str) -> str | None:
    """Why Redis' ``maxmemory-policy`` is unsafe for Bastion, or None."""
    if policy == SAFE_POLICY:
        return None
    return (
        f"Redis maxmemory-policy is {policy}: under memory pressure Redis would silently "
        "delete rate-limit counters, token revocations and spent 2FA markers; set "
        f"maxmemory-policy {SAFE_POLICY} on the Redis server of BASTION_REDIS_URL"
    )


def read_policy(url: str) -> str | None:
    """The server's ``maxmemory_policy`` (``INFO memory``); None when Redis is unreachable,
    refuses ``INFO`` or does not name it. Short timeouts: start-up must not hang on it."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1,
                                  driver_info=None)
    try:
        info = cast(dict[str, Any], client.info("memory"))  # the sync client: a dict
        policy = info.get("maxmemory_policy")
    except redis.RedisError as exc:
        log.warning("redis maxmemory-policy not checked", extra={"error": type(exc).__name__})
        return None
    finally:
        client.close()
    if not policy:
        log.warning("redis maxmemory-policy not checked", extra={"error": "not in INFO memory"})
        return None
    return str(policy)


def check_redis_eviction(app: Flask) -> None:
    """In production with Redis: refuse start-up if its policy evicts keys."""
    url = app.config.get("REDIS_URL")
    if app.config.get("ENV_NAME") != "production" or not url:
        return
    if not app.config.get("REDIS_POLICY_CHECK", True):
        return
    policy = read_policy(str(url))
    if policy is not None and (problem := eviction_problem(policy)):
        raise refusal([problem])
