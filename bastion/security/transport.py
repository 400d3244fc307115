"""Production refuses plaintext to PostgreSQL and Redis across a network it was not told
is private.

Credentials, sessions' data and rate-limit state travel on these connections. Loopback and
Unix sockets never leave the host; any other host must be reached over TLS that verifies
the server (``sslmode=verify-full`` or ``verify-ca``; a ``rediss://`` URL that does not turn
certificate checks off), or be named in ``BASTION_PLAINTEXT_DATA_HOSTS`` by an operator
who knows the network is private (compose's ``backend`` network has no route out, for
example). ``sslmode=require`` is not enough: it encrypts without checking who answers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

VERIFYING_SSLMODES = ("verify-full", "verify-ca")


def _local(host: str | None) -> bool:
    """Unix socket (no host) or loopback."""
    if not host or host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def database_problem(url: str, private_hosts: Collection[str]) -> str | None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # the engine reports a malformed URL itself
    if not parsed.drivername.startswith("postgresql"):
        return None
    host = parsed.host
    if _local(host) or host in private_hosts:
        return None
    sslmode = parsed.query.get("sslmode")
    if sslmode in VERIFYING_SSLMODES:
        return None
    return (
        f"BASTION_DATABASE_URL reaches {host} without verified TLS: add "
        f"?sslmode=verify-full (with sslrootcert=...) or, if the network to it is private, "
        f"name it in BASTION_PLAINTEXT_DATA_HOSTS"
    )


def redis_problem(url: str, private_hosts: Collection[str]) -> str | None:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return None
    if parts.scheme == "rediss":
        reqs = parse_qs(parts.query).get("ssl_cert_reqs", ["required"])[-1].lower()
        if reqs in ("none", "cert_none", "optional"):
            return "BASTION_REDIS_URL turns certificate checks off (ssl_cert_reqs)"
        return None
    host = parts.hostname
    if _local(host) or host in private_hosts:
        return None
    return (
        f"BASTION_REDIS_URL reaches {host} without TLS: use a rediss:// URL or, if the "
        f"network to it is private, name it in BASTION_PLAINTEXT_DATA_HOSTS"
    )
