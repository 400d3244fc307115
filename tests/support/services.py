"""Reachability and housekeeping for the outside services tests use."""

from __future__ import annotations

import socket
from urllib.parse import quote

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

# Bound, never listening, until the run ends: see ``refused_port``.
_HELD: list[socket.socket] = []


def refused_port() -> int:
    """A loopback port where every connection is refused at once, for the whole run.

    The socket stays bound but never listens: a port merely found free and closed again
    could be taken meanwhile by another process, which might then answer or hang.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD.append(sock)
    return int(sock.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def pg_reachable(url: str) -> bool:
    u = make_url(url)
    if not _port_open(u.host or "127.0.0.1", u.port or 5432):
        return False
    try:
        pg_execute(url, "SELECT 1")
    except Exception:
        return False
    return True


def pg_execute(url: str, sql: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


def redis_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def redis_delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{prefix}*", count=500):
        client.delete(key)
    for key in client.scan_iter(f"*{prefix}*", count=500):
        client.delete(key)
