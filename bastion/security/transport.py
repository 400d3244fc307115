"""Production refuses plaintext to PostgreSQL, Redis and the mail relay across a network it
was not told is private.

Credentials, sessions' data, rate-limit state and mailed reset links travel on these
connections. Loopback and
Unix sockets never leave the host; any other host must be reached over TLS that verifies
the server (``sslmode=verify-full`` or ``verify-ca``; a ``rediss://`` URL that does not turn
certificate checks off), or be named in ``BASTION_PLAINTEXT_DATA_HOSTS`` by an operator
who knows the network is private (compose's ``backend`` network has no route out, for
example). ``sslmode=require`` is not enough: it encrypts without checking who answers.

Each URL is judged as its client library will read it, not as it looks: libpq also takes
hosts from ``?host=`` / ``?hostaddr=`` (and, when the URL names none, from ``PGHOST``,
``PGHOSTADDR`` or a ``service``), and redis-py takes ``?host=`` and reads the first of
repeated options, percent-decoded twice. Judging only the URL's host part let
``postgresql://u@/db?host=db.example.net`` and ``redis://?host=cache.example.net`` through.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Collection, Iterator
from urllib.parse import urlsplit

from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url
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


def _host_of(item: str) -> str:
    """``host``, ``host:port`` or ``[v6]:port`` as libpq lists them, without the port."""
    item = item.strip()
    if item.startswith("["):
        return item[1:].partition("]")[0]
    if item.count(":") == 1:
        return item.partition(":")[0]
    return item


def _values(value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _pg_hosts(host: str | None, query: dict[str, str | tuple[str, ...]]) -> Iterator[str]:
    """Every server libpq may connect to for this URL (a socket directory counts as local)."""
    named = [*_values(host), *_values(query.get("host")), *_values(query.get("hostaddr"))]
    if not named:
        # libpq falls back on the environment, then on a service file whose hosts no one
        # here can see: judge those as remote unless the connection verifies the server.
        named = [v for v in (os.environ.get("PGHOST"), os.environ.get("PGHOSTADDR")) if v]
        service = _values(query.get("service")) or _values(os.environ.get("PGSERVICE"))
        if not named and service:
            yield f"the hosts of service {service[-1]!r}"
    for value in named:
        for item in value.split(","):
            if item.strip():
                yield _host_of(item)


def database_problem(url: str, private_hosts: Collection[str]) -> str | None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # the engine reports a malformed URL itself
    if not parsed.drivername.startswith("postgresql"):
        return None
    remote = [h for h in _pg_hosts(parsed.host, dict(parsed.query))
              if not _local(h) and h not in private_hosts]
    if not remote:
        return None
    sslmode = parsed.query.get("sslmode")
    if sslmode in VERIFYING_SSLMODES:
        return None
    return (
        f"BASTION_DATABASE_URL reaches {remote[0]} without verified TLS: add "
        f"?sslmode=verify-full (with sslrootcert=...) or, if the network to it is private, "
        f"name it in BASTION_PLAINTEXT_DATA_HOSTS"
    )


def redis_problem(url: str, private_hosts: Collection[str]) -> str | None:
    try:
        # What redis-py (and the rate limiter through it) will use.
        options = parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        return f"BASTION_REDIS_URL cannot be used: {exc}"
    connection = options.get("connection_class")
    if connection is UnixDomainSocketConnection:
        return None
    if connection is SSLConnection:
        if str(options.get("ssl_cert_reqs", "required")).lower() != "required":
            return "BASTION_REDIS_URL turns certificate checks off (ssl_cert_reqs)"
        if options.get("ssl_check_hostname") is False:
            # Any certificate from a CA in the system store would then do, whoever holds it.
            return "BASTION_REDIS_URL turns the server name check off (ssl_check_hostname)"
        return None
    host = str(options.get("host", "localhost"))
    if _local(host) or host in private_hosts:
        return None
    return (
        f"BASTION_REDIS_URL reaches {host} without TLS: use a rediss:// URL or, if the "
        f"network to it is private, name it in BASTION_PLAINTEXT_DATA_HOSTS"
    )


def mail_problem(url: str, private_hosts: Collection[str]) -> str | None:
    """``smtp://...?tls=none`` sends the relay password and every reset link in clear text.

    STARTTLS (the default) and ``smtps://`` verify the relay's certificate
    (``bastion.mail._send_smtp``); only the explicit ``none`` skips TLS, which is for a relay
    on this host or on a network the operator names private.
    """
    from bastion.mail import smtp_tls

    parts = urlsplit(url)
    if parts.scheme != "smtp" or smtp_tls(url) != "none":
        return None
    host = parts.hostname or "localhost"
    if _local(host) or host in private_hosts:
        return None
    return (
        f"BASTION_MAIL_URL sends to {host} without TLS (?tls=none): drop ?tls=none (STARTTLS, "
        f"verified) or use smtps://, or, if the network to it is private, name it in "
        f"BASTION_PLAINTEXT_DATA_HOSTS"
    )
