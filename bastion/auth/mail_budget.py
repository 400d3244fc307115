"""How many messages one client may have mailed to one address it need not own.

A password reset, a sign-up with a taken address and an email change each mail an address
typed by whoever asks. The route limits count the client across all addresses, so one
client could still have about fifty such messages an hour sent to one victim. This budget
counts the pair (address, client): past it, the reply stays exactly the same and nothing
more goes out to that address for that client, so it reveals nothing and mail-bombs
nobody. The owner asking from their own address has a budget of their own, so an attacker
who spends theirs cannot stop the owner's reset.

Spent on every such request, whether or not the address has an account, so the reply
costs the same either way. The store is the rate limiter's (Redis in production, shared by
every instance); addresses are kept only as keyed digests.
"""

from __future__ import annotations

import logging
from functools import cache

from flask import current_app
from limits import RateLimitItem, parse_many

from bastion.extensions import limiter
from bastion.security.ratelimit_keys import client_key
from bastion.security.tokens import keyed_digest

log = logging.getLogger("bastion.mail")
# Enough for someone whose first message is late or filtered to ask twice more.
PER_ADDRESS_AND_CLIENT = "3 per 15 minutes; 10 per day"


def allows(address: str, ip: str) -> bool:
    """Spend one message to ``address`` asked for from ``ip``; False when that budget is spent."""
    if not limiter.enabled:
        return True
    args = [
        str(current_app.config["RATELIMIT_KEY_PREFIX"]),
        "mail-to",
        keyed_digest(b"mail-to\0", address)[:32],
        client_key(ip),
    ]
    for item in _items():
        try:
            allowed = limiter.limiter.hit(item, *args)
        except Exception:  # the store failed: mail as without a budget, as the limiter does
            log.warning("mail budget store failed; message not counted", exc_info=True)
            return True
        if not allowed:
            log.warning("mail budget of an address spent for this client; message not sent")
            return False
    return True


@cache
def _items() -> tuple[RateLimitItem, ...]:
    return tuple(sorted(parse_many(PER_ADDRESS_AND_CLIENT)))
