"""How many messages one client may have mailed to one mailbox it need not own.

A password reset, a sign-up (with a taken address or a new one) and an email change each
mail an address typed by whoever asks. The route limits count the client across all
addresses, so one client could still have about fifty such messages an hour sent to one
victim. This budget counts the pair (mailbox, client): past it, the reply stays exactly the
same and nothing more goes out to that mailbox for that client, so it reveals nothing and
mail-bombs nobody. The owner asking from their own address has a budget of their own, so an
attacker who spends theirs cannot stop the owner's reset.

A mailbox, not an address: ``victim+1@``, ``victim+2@``, ... all land in ``victim@``'s
mailbox (and at Gmail so do ``vic.tim@`` and ``victim@googlemail.com``), and counted apart
each had a budget of its own (``mailbox``).

Spent on every such request, whether or not the address has an account, so the reply
costs the same either way. The store is the rate limiter's (Redis in production, shared by
every instance); mailboxes are kept only as keyed digests.
"""

from __future__ import annotations

import logging
from functools import cache

from flask import current_app
from limits import RateLimitItem, parse_many

from bastion.auth.services import canonical_email
from bastion.extensions import limiter
from bastion.security.ratelimit_keys import client_key
from bastion.security.tokens import keyed_digest

log = logging.getLogger("bastion.mail")
# Enough for someone whose first message is late or filtered to ask twice more.
PER_MAILBOX_AND_CLIENT = "3 per 15 minutes; 10 per day"
GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def mailbox(address: str) -> str:
    """The mailbox ``address`` reaches, as the budget counts it: the stored form
    (``canonical_email``: lower case, the domain in IDNA ASCII) without its sub-address tag,
    ``local+tag@domain`` to ``local@domain``.

    Only ``+`` tags (RFC 5233 sub-addressing, which most providers honour), and one
    provider's own rule: Gmail ignores dots in the local part and takes ``googlemail.com``
    for ``gmail.com`` (as Google documents it, and has for two decades), so
    ``v.i.c.t.i.m@gmail.com`` would otherwise be one more budget for the largest provider's
    every mailbox. No other provider's rule (a ``-`` tag, dots elsewhere): they hold at one
    provider and not at the next, where ``a.b@`` and ``ab@`` are two people, and a table of
    who does what would go stale. A local part that starts with ``+`` has no tag to drop.
    """
    canonical = canonical_email(address)
    local, at, domain = canonical.rpartition("@")
    base, plus, _tag = local.partition("+")
    if at and domain in GMAIL_DOMAINS and base.replace(".", ""):
        return f"{base.replace('.', '')}@gmail.com"
    return f"{base}@{domain}" if at and plus and base else canonical


def is_own_mailbox(address: str) -> bool:
    """Whether ``address`` is its mailbox's own address, with no sub-address tag."""
    return mailbox(address) == canonical_email(address)


def allows(address: str, ip: str) -> bool:
    """Spend one message to the mailbox of ``address`` asked for from ``ip``; False when
    that budget is spent."""
    if not limiter.enabled:
        return True
    args = [
        str(current_app.config["RATELIMIT_KEY_PREFIX"]),
        "mail-to",
        # The digest of an address without a tag is as before: its count carries over.
        keyed_digest(b"mail-to\0", mailbox(address))[:32],
        client_key(ip),
    ]
    for item in _items():
        try:
            allowed = limiter.limiter.hit(item, *args)
        except Exception:  # the store failed: mail as without a budget, as the limiter does
            log.warning("mail budget store failed; message not counted", exc_info=True)
            return True
        if not allowed:
            log.warning("mail budget of a mailbox spent for this client; message not sent")
            return False
    return True


@cache
def _items() -> tuple[RateLimitItem, ...]:
    return tuple(sorted(parse_many(PER_MAILBOX_AND_CLIENT)))
