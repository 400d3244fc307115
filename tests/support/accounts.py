"""Helpers for account tests: read the outbox, follow emailed links, make TOTP codes."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import time
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.support.auth import csrf_token

if TYPE_CHECKING:
    from bastion.models import User

LINK_RE = re.compile(r"https?://[^\s/]+(/\S+)")
SECRET_RE = re.compile(r'<code class="secret" id="totp-secret">((?:<span>[A-Z2-7]{1,4}</span>)+)</code>')


def full_width(text: str) -> str:
    """``text`` with its printable ASCII in full-width forms (U+FF01 to U+FF5E), which NFKC
    maps back: ``full_width("a@b.c")`` is the address typed on a full-width keyboard."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def shown_totp_secret(page: str) -> str | None:
    """The key the enrolment page shows (in groups of four), or None."""
    found = SECRET_RE.search(page)
    return re.sub(r"</?span>", "", found.group(1)) if found else None


class Outbox:
    """Messages the app wrote to OUTBOX_DIR (no MAIL_URL configured)."""

    def __init__(self, app: Flask) -> None:
        self.dir = Path(app.config["OUTBOX_DIR"])
        shutil.rmtree(self.dir, ignore_errors=True)

    def messages(self) -> list[EmailMessage]:
        # Oldest first by name (bastion.mail names them so); two messages written within one
        # tick of the file system's clock have the same mtime, and glob order is arbitrary.
        files = sorted(self.dir.glob("*.eml")) if self.dir.exists() else []
        out = []
        for path in files:
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            out.append(msg)
        return out

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages() if address.lower() in str(m["To"]).lower()]

    def link(self, address: str, path_prefix: str) -> str:
        """The path of the newest emailed link to ``address`` that starts with the prefix."""
        return link_in(self.to(address), path_prefix)


def link_in(messages: list[EmailMessage], path_prefix: str) -> str:
    for msg in reversed(messages):
        body = msg.get_body(preferencelist=("plain",))
        assert body is not None
        for path in LINK_RE.findall(body.get_content()):
            if path.startswith(path_prefix):
                return str(path)
    raise AssertionError(f"no link starting {path_prefix} in {len(messages)} message(s)")


def post_form(client: FlaskClient, page: str, data: dict[str, str], action: str | None = None) -> TestResponse:
    """GET ``page`` for its CSRF token, then POST ``data`` to ``action`` (default: same page)."""
    token = csrf_token(client, page)
    return client.post(action or page, data={"csrf_token": token, **data})


def unused_code(secret: str, last_step: int | None) -> str:
    """A valid code for a time step after ``last_step`` (within the accepted window)."""
    totp = pyotp.TOTP(secret)
    now = totp.timecode(time.time())
    for step in (now, now + 1):
        if last_step is None or step > last_step:
            return str(totp.generate_otp(step))
    raise AssertionError("no unused step in the window; reset totp_last_step first")


def user_count() -> int:
    """How many accounts exist: what a refused sign-up must leave unchanged."""
    from sqlalchemy import func, select

    from bastion.extensions import db
    from bastion.models import User

    return int(db.session.scalar(select(func.count()).select_from(User)) or 0)


def refused_display_name(name: str, user: User | None = None) -> str:
    """The message refusing ``name`` as ``user``'s display name (a new user's by default);
    the stored name, "Before", stays as it was."""
    import pytest

    from bastion.extensions import db
    from bastion.models import User as UserModel
    from bastion.profiles.services import ProfileError, update_profile
    from tests.factories import UserFactory

    user = user or UserFactory(display_name="Before")
    with pytest.raises(ProfileError) as caught:
        update_profile(user, display_name=name, bio="")
    assert caught.value.field == "display_name"
    db.session.expire_all()
    assert db.session.get(UserModel, user.id).display_name == "Before"
    return str(caught.value)
