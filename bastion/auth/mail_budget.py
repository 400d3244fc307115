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

Clients enough (a botnet, the /64s of one /48) would each have a budget of their own, so
every client's messages to one mailbox count together too (``PER_MAILBOX``), and reset links
to one address apart (``RESET_LINKS_PER_ADDRESS`` per ``RESET_MINUTES``): past that the
mailbox already holds that many live reset links, so a reset its owner asks for and does
not get is never one they need. Spent only by a client still within its own budget, so one
client alone cannot spend them.

Spent on every such request, whether or not the address has an account, so the reply
costs the same either way. The store is the rate limiter's (Redis in production, shared by
every instance); mailboxes are kept only as keyed digests.
"""

from __future__ import annotations

import logging
from functools import cache

from flask import current_app
from limits import RateLimitItem, RateLimitItemPerMinute, parse_many

from bastion.auth.services import canonical_email
from bastion.extensions import limiter
from bastion.security.ratelimit_keys import client_key
from bastion.security.tokens import keyed_digest

log = logging.getLogger("bastion.mail")
# Enough for someone whose first message is late or filtered to ask twice more.
PER_MAILBOX_AND_CLIENT = "3 per 15 minutes; 10 per day"
# Every client together: sign-up messages and email-change links (not reset links).
PER_MAILBOX = "10 per hour; 20 per day"
# Every client together, per RESET_MINUTES (a link's lifetime): no longer window, or a
# reset refused could come when every link mailed before has expired.
RESET_LINKS_PER_ADDRESS = 5
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


def allows(address: str, ip: str, *, reset: bool = False) -> bool:
    """Spend one message to the mailbox of ``address`` asked for from ``ip`` (a reset
    link with ``reset``); False when that client's budget, or every client's, is spent."""
    if not limiter.enabled:
        return True
    prefix = str(current_app.config["RATELIMIT_KEY_PREFIX"])
    # The digest of an address without a tag is as before: its count carries over.
    box = keyed_digest(b"mail-to\0", mailbox(address))[:32]
    if not _spend(_items(PER_MAILBOX_AND_CLIENT), prefix, "mail-to", box, client_key(ip)):
        log.warning("mail budget of a mailbox spent for this client; message not sent")
        return False
    if reset:
        # The address, not its mailbox: links for another address there (victim+1@, an
        # account anyone can start) reset another account.
        minutes = int(current_app.config["RESET_MINUTES"])
        items: tuple[RateLimitItem, ...] = (
            RateLimitItemPerMinute(RESET_LINKS_PER_ADDRESS, minutes),)
        every = [prefix, "reset-to", keyed_digest(b"reset-to\0", canonical_email(address))[:32]]
    else:
        items, every = _items(PER_MAILBOX), [prefix, "mail-to-all", box]
    if not _spend(items, *every):
        log.warning("mail budget of a mailbox spent for all clients; message not sent")
        return False
    return True


def _spend(items: tuple[RateLimitItem, ...], *key: str) -> bool:
    """Hit each of ``items`` under ``key``; False at the first one spent."""
    for item in items:
        try:
            if not limiter.limiter.hit(item, *key):
                return False
        except Exception:  # the store failed: mail as without a budget, as the limiter does
            log.warning("mail budget store failed; message not counted", exc_info=True)
            return True
    return True


@cache
def _items(limits: str) -> tuple[RateLimitItem, ...]:
    return tuple(sorted(parse_many(limits)))
