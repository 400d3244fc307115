"""The client a rate limit counts against: its IPv4 address, or its IPv6 /64.

Why not the address itself: an IPv6 host is normally given a whole /64 (SLAAC, privacy
extensions, a hosting provider's allocation), so it can send every request from a new
address and never fill a bucket keyed by the full address. The /64 is what one subscriber
or machine controls; counting it as one client is what RFC 6177 and the big providers'
own abuse limits assume. IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``, from a
dual-stack socket) count as the IPv4 address they carry.

A port after the address is dropped: some proxies write it into X-Forwarded-For (Azure App
Service and some load balancers: ``203.0.113.7:51234``, ``[2001:db8::1]:51234``), and a
client has a new one on every connection, so keyed with it every connection would be a
fresh bucket and no limit would ever be reached.

Writes by a signed-in user count against the account instead (``signed_in_user``): one
account could otherwise spread costly saves over as many addresses as it has.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from flask import request
from flask_login import current_user

IPV6_PREFIX = 64

# ``[address]`` or ``[address]:port`` (IPv6, RFC 3986's form), or ``IPv4:port``.
_WITH_PORT = re.compile(r"\[(?P<bracketed>[^\]]*)\](?::\d{1,5})?|(?P<ipv4>[\d.]+):\d{1,5}")


@lru_cache(maxsize=4096)
def without_port(address: str) -> str:
    """``address`` without the port a proxy may have written after it (``IPv4:port``,
    ``[IPv6]:port``, ``[IPv6]``, or an IPv6 address and a port that cannot be one of its
    groups); anything else as it is. Cached: the same few clients come back request after
    request."""
    if ":" not in address:
        return address  # IPv4, the common case, costs nothing
    with_port = _WITH_PORT.fullmatch(address)
    if with_port is not None:
        host = with_port["ipv4"] or with_port["bracketed"]
        return host if _is_address(host) else address
    head, _, port = address.rpartition(":")
    if _is_address(address):
        # IPv6 with a port but no brackets that parses anyway: the port took the place of
        # a zero group the "::" stood for. Left so, that group can be one of the /64's
        # (2001:db8::4:5:6:7 with port 80 read as 2001:db8:0:4:5:6:7:80, another /64 for
        # each first group the host picks). Read so when "::" stands for a single group,
        # which no RFC 5952 writer (inet_ntop, nginx, Go, Python) uses. Where it stands for
        # more, the port parses as the last group, inside the client's own /64 (but for
        # ::/64 and the x:0:0:0::/64s, which no client on the Internet has).
        if port.isdigit() and _elides_one_group(address) and _is_address(head):
            return head
        return address
    # IPv6 with a port but no brackets that fails to parse: the port is no hex group (above
    # 9999) or makes a ninth group.
    return head if port.isdigit() and _is_address(head) and ":" in head else address


def _elides_one_group(address: str) -> bool:
    """Whether the IPv6 ``address`` (valid, without a scope or a dotted tail) writes "::"
    for exactly one zero group: seven groups are written out."""
    return "::" in address and sum(1 for group in address.split(":") if group) == 7


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=4096)
def _address_client(host: str) -> str | None:
    """The bucket for an address without its port, or None for what is no address."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip), IPV6_PREFIX), strict=False))


def client_key(address: str) -> str:
    """The bucket for ``address``: IPv4 as it is, IPv6 by its /64 (``2001:db8::/64``).

    A port after either is dropped; what is no address at all (a unix socket's peer, say)
    is kept as it is.
    """
    if ":" not in address:
        return address  # IPv4, the common case, costs nothing
    return _address_client(without_port(address)) or address


def remote_client() -> str:
    """Flask-Limiter's key function: ``client_key`` of the request's (ProxyFix-ed) address."""
    return client_key(request.remote_addr or "127.0.0.1")


def signed_in_user() -> str:
    """The account (``user:<id>``) when the request is signed in, else ``remote_client``.

    Inside the API the account is known only once the bearer token has been checked
    (``bastion.api.auth.require_scopes``); before that this is the client address.
    """
    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    return remote_client()
