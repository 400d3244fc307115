"""Outgoing mail: plain text + HTML, over SMTP, or to the outbox when no server is set.

``BASTION_MAIL_URL`` is ``smtp://[user:pass@]host[:port]`` (STARTTLS, required unless the host
is loopback or ``?tls=none``) or ``smtps://...`` (implicit TLS). Without it (development and
tests) each message is written to ``OUTBOX_DIR`` as an ``.eml`` file and logged, so links can
be followed without a mail server. Production refuses to start without it (bastion/config.py),
and never writes a message to the outbox or a message body to the log: the links in them
sign in, reset passwords and change addresses.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
import uuid
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from flask import current_app, has_request_context, render_template, url_for

log = logging.getLogger("bastion.mail")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def build_message(to: str, subject: str, template: str, **context: Any) -> EmailMessage:
    """Render ``mail/<template>.txt`` and ``.html`` into one multipart message.

    Every message is machine-made (RFC 3834 ``Auto-Submitted``, and Exchange's
    ``X-Auto-Response-Suppress``), so vacation and out-of-office responders do not answer
    it: their replies would go to the no-reply sender, or bounce back and forth with it.
    """
    msg = EmailMessage()
    msg["From"] = current_app.config["MAIL_SENDER"]
    msg["To"] = to
    msg["Subject"] = subject
    # "+0000", not formatdate()'s "-0000", which RFC 5322 reserves for "zone unknown".
    msg["Date"] = format_datetime(datetime.now(UTC))
    # Random alone: make_msgid() would write the time and the worker's process id into it.
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@{_sender_domain(msg)}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(render_template(f"mail/{template}.txt", subject=subject, **context))
    msg.add_alternative(
        render_template(f"mail/{template}.html", subject=subject, **context), subtype="html"
    )
    return msg


def site_url(endpoint: str, **values: Any) -> str | None:
    """An absolute link for a mail: on ``PUBLIC_URL`` when it is set, in a request or not
    (a command such as ``users reset-2fa`` has none, and its mail lost its link), else on
    the request's host; None when neither is known."""
    if has_request_context():
        return url_for(endpoint, _external=True, **values)
    base = current_app.config.get("PUBLIC_URL")
    if not base:
        return None
    parts = urlsplit(str(base))
    adapter = current_app.url_map.bind(
        parts.netloc, script_name=parts.path or "/", url_scheme=parts.scheme
    )
    return adapter.build(endpoint, values, force_external=True)


def _addressed_as_given(msg: EmailMessage, to: str) -> bool:
    """Whether the ``To`` header names ``to`` itself, the one mailbox it is sent to.

    The header parser decodes an RFC 2047 encoded word inside an address, which no address
    may hold but an account stored before the forms refused one can: the envelope and the
    header would name the decoded mailbox (``=?utf-8?q?victim?=@example.org`` is mailed at
    ``victim@example.org``), not the account's.
    """
    addresses: tuple[Address, ...] = getattr(msg["To"], "addresses", ())
    return len(addresses) == 1 and addresses[0].addr_spec == to


def _sender_domain(msg: EmailMessage) -> str:
    """The domain of the From address, for Message-IDs the sending site can vouch for."""
    addresses: tuple[Address, ...] = getattr(msg["From"], "addresses", ())
    domain = addresses[0].domain if addresses else ""
    return domain or "localhost"


def send_mail(
    to: str, subject: str, template: str, *, deliver: bool = True, **context: Any
) -> None:
    """Render now, deliver (in the background when MAIL_BACKGROUND is on).

    Background delivery keeps the reply time of "reset my password" or "register" the same
    whether or not a message goes out, so timing cannot tell which addresses have accounts.
    For the same reason ``deliver=False`` does all of the work but the delivery: a request
    that must not mail (an unknown address, a spent budget) still renders its message.
    Failures are logged, never shown to the user.
    """
    built = build_message(to, subject, template, **context)
    if deliver and not _addressed_as_given(built, to):
        log.error(
            "mail not sent",
            extra={"template": template, "error": "recipient reads as another address"},
        )
        deliver = False
    msg = built if deliver else None
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.config.get("MAIL_BACKGROUND"):
        threading.Thread(target=_deliver_in, args=(app, msg, template), daemon=True).start()
    elif msg is not None:
        _deliver(msg, template)


def _deliver_in(app: Any, msg: EmailMessage | None, template: str) -> None:
    if msg is None:
        return
    with app.app_context():
        _deliver(msg, template)


def _deliver(msg: EmailMessage, template: str) -> None:
    url = current_app.config.get("MAIL_URL")
    if not url and current_app.config["ENV_NAME"] == "production":
        # Start-up refuses this; should the setting be gone all the same, the message is
        # dropped rather than written with its link to disk.
        log.error("mail not sent", extra={"template": template, "error": "no BASTION_MAIL_URL"})
        return
    try:
        if url:
            _send_smtp(str(url), msg)
        else:
            _write_outbox(msg)
    # ValueError: an unparsable MAIL_URL (a '#' in the password ends the host part) or
    # credentials SMTP cannot encode. It fails only when a message goes out, so letting it
    # through would turn "reset my password" into a 500 for exactly the known addresses.
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        log.error("mail not sent", extra={"template": template, "error": type(exc).__name__})


def mail_url_problem(url: str) -> str | None:
    """Why ``BASTION_MAIL_URL`` cannot be used, or None; checked at start-up, because a URL
    that fails only when a message goes out fails on a user's reset request."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "BASTION_MAIL_URL cannot be parsed (percent-encode '#', '?', '/' and '@' in the password)"
    if parts.scheme not in ("smtp", "smtps"):
        return "BASTION_MAIL_URL must start with smtp:// or smtps://"
    if not parts.hostname:
        return "BASTION_MAIL_URL names no host"
    if parts.scheme == "smtp" and smtp_tls(url) not in ("starttls", "none"):
        return "BASTION_MAIL_URL's ?tls= must be starttls (the default) or none"
    return None


def smtp_tls(url: str) -> str:
    """How an ``smtp://`` URL asks to protect the connection: ``starttls`` or ``none``."""
    return parse_qs(urlsplit(url).query).get("tls", ["starttls"])[0]


def _greeting_name(msg: EmailMessage) -> str:
    """The name the relay is greeted with (EHLO): the sender's domain.

    smtplib's default is the machine's own name, or its private address when that name has
    no dot (a container's), and relays copy it into the ``Received`` header every recipient
    can read. A domain that is not ASCII cannot be sent in the greeting; ``localhost`` then.
    """
    domain = _sender_domain(msg)
    return domain if domain.isascii() else "localhost"


def _send_smtp(url: str, msg: EmailMessage) -> None:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    tls = smtp_tls(url)
    context = ssl.create_default_context()
    name = _greeting_name(msg)
    if parts.scheme == "smtps":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            host, parts.port or 465, local_hostname=name, timeout=10, context=context
        )
    elif parts.scheme == "smtp":
        smtp = smtplib.SMTP(host, parts.port or 587, local_hostname=name, timeout=10)
    else:
        raise smtplib.SMTPException(f"unsupported mail URL scheme {parts.scheme!r}")
    with smtp:
        if parts.scheme == "smtp" and tls != "none":
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
            elif host not in LOOPBACK:
                # Credentials and reset links must not cross the network in clear text.
                raise smtplib.SMTPException("server does not offer STARTTLS")
        if parts.username:
            smtp.login(unquote(parts.username), unquote(parts.password or ""))
        smtp.send_message(msg)


_outbox_lock = threading.Lock()
_outbox_last = 0


def _outbox_name() -> str:
    """A name that sorts after every earlier one of this process: the order messages were
    written in, which file times (a clock tick apart, or the same tick) cannot tell."""
    global _outbox_last
    with _outbox_lock:
        _outbox_last = max(_outbox_last + 1, time.time_ns())
        stamp = _outbox_last
    return f"{stamp:020d}-{uuid.uuid4().hex}.eml"


def _write_outbox(msg: EmailMessage) -> None:
    outbox = Path(current_app.config["OUTBOX_DIR"])
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / _outbox_name()
    path.write_bytes(msg.as_bytes())
    facts = {"to": msg["To"], "subject": msg["Subject"], "path": str(path)}
    if current_app.config["ENV_NAME"] != "production":
        # Development reads its links from the log; production never logs message bodies.
        body = msg.get_body(preferencelist=("plain",))
        facts["body"] = body.get_content() if body is not None else ""
    log.info("mail written to outbox", extra=facts)
