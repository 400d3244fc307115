"""The client a rate limit counts against: its IPv4 address, or its IPv6 /64.

Why not the address itself: an IPv6 host is normally given a whole /64 (SLAAC, privacy
extensions, a hosting provider's allocation), so it can send every request from a new
address and never fill a bucket keyed by the full address. The /64 is what one subscriber
or machine controls; counting it as one client is what RFC 6177 and the big providers'
own abuse limits assume. IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``, from a
dual-stack socket) count as the IPv4 address they carry.

Writes by a signed-in user count against the account instead (``signed_in_user``): one
account could otherwise spread costly saves over as many addresses as it has.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from flask import request
from flask_login import current_user

IPV6_PREFIX = 64


@lru_cache(maxsize=4096)
def _ipv6_client(address: str) -> str:
    """Cached: the same few clients come back request after request."""
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address  # not an address (a unix socket's peer, say): as it is
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip), IPV6_PREFIX), strict=False))


def client_key(address: str) -> str:
    """The bucket for ``address``: IPv4 as it is, IPv6 by its /64 (``2001:db8::/64``)."""
    if ":" not in address:
        return address  # IPv4, the common case, costs nothing
    return _ipv6_client(address)


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
