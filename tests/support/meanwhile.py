"""An account changed from another session while a request on its behalf is on its way.

A request judges its actor on the account it loaded at its start. These commit a change of
that account (a demotion, disabling, "sign out everywhere", deletion) from another database
session at a chosen moment of the request, as another admin's request would meanwhile: just
before the service takes a user's row lock (``before_the_lock``), or started as a step of it
returns and left to wait for any lock the request holds (``after_the_call``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete

from bastion.admin import services as admin
from bastion.extensions import db
from bastion.models import User
from tests.factories import UserFactory
from tests.support.races import MEET_SECONDS, elsewhere

# A change of the account, made in the other session on the account loaded there.
AccountChange = Callable[[User], object]


def demotable_admin() -> User:
    """An admin whom a demotion or disabling can reach: not the last admin."""
    UserFactory(role_name="admin")
    user: User = UserFactory(role_name="admin")
    return user


def demoted(role: str = "editor") -> AccountChange:
    """The account's role lowered to ``role`` by an admin."""
    return lambda user: admin.set_role(None, user, role)


def disabled(user: User) -> None:
    """The account disabled by an admin."""
    admin.set_disabled(None, user, True)


def signed_out_everywhere(user: User) -> None:
    """Every sign-in of the account ended by an admin (sessions and tokens)."""
    admin.sign_out_everywhere(None, user)


def deleted(user: User) -> None:
    """The account's row deleted; its rows elsewhere go with it by the foreign keys."""
    db.session.execute(delete(User).where(User.id == user.id))


def change_elsewhere(app: Flask, user_id: int, change: AccountChange) -> None:
    """Load account ``user_id`` in another session, ``change`` it there and commit."""

    def run() -> None:
        user = db.session.get(User, user_id)
        assert user is not None
        change(user)

    elsewhere(app, run)


def before_the_lock(app: Flask, monkeypatch: pytest.MonkeyPatch, service: ModuleType,
                    user_id: int, change: AccountChange) -> list[int]:
    """Commit ``change`` of account ``user_id`` from another session just before
    ``service`` (a module calling ``lock_user``) takes its first user lock: after the
    request loaded and judged its actor, before it writes. Returns the ids it locked."""
    real: Callable[[int], None] = service.lock_user
    locked: list[int] = []

    def changed_then_locked(uid: int) -> None:
        if not locked:
            change_elsewhere(app, user_id, change)
        locked.append(uid)
        real(uid)

    monkeypatch.setattr(service, "lock_user", changed_then_locked)
    return locked


class Meanwhile:
    """A change of an account started from another session mid-way through a request."""

    def __init__(self, app: Flask, user_id: int, change: AccountChange) -> None:
        self._committed = threading.Event()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(app, user_id, change))
        # Set once started: whether it had not committed when the request went on.
        self.held_up: bool | None = None

    def _run(self, app: Flask, user_id: int, change: AccountChange) -> None:
        try:
            change_elsewhere(app, user_id, change)
            self._committed.set()
        except BaseException as exc:  # raised by ``finish``, in the test's own thread
            self._errors.append(exc)

    def start(self, seconds: float) -> None:
        """Start the change and hold the request up until it commits or ``seconds`` pass."""
        self._thread.start()
        self.held_up = not self._committed.wait(seconds)

    def finish(self) -> None:
        """Wait for the change to end (the request is done), and raise what it raised."""
        assert self.held_up is not None, "the request never reached the change"
        self._thread.join(30)
        assert not self._thread.is_alive(), "the change hung"
        if self._errors:
            raise self._errors[0]


def after_the_call(app: Flask, monkeypatch: pytest.MonkeyPatch, owner: object, name: str,
                   user_id: int, change: AccountChange, *,
                   seconds: float = MEET_SECONDS) -> Meanwhile:
    """Start ``change`` of account ``user_id`` from another session as soon as the first
    call of ``owner.name`` returns, holding the request up until the change commits or
    ``seconds`` pass (``Meanwhile.held_up``: it had not); ``finish`` after the request."""
    real: Callable[..., Any] = getattr(owner, name)
    meanwhile = Meanwhile(app, user_id, change)

    def called_then_changed(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if meanwhile.held_up is None:
            meanwhile.start(seconds)
        return result

    monkeypatch.setattr(owner, name, called_then_changed)
    return meanwhile
