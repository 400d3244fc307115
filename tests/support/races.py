"""Run actions at the same moment from several threads, and make them meet mid-way.

Race tests need both: a start barrier so the threads really overlap, and meeting points
after a read so every racer decides on the same (soon stale) state before any writes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from bastion.extensions import db

# How long a racer waits at a meeting point for the others. A barrier broken by the wait
# running out is expected: another racer may be held up by the very lock under test.
MEET_SECONDS = 1.0


def race(actions: list[Callable[[], Any]], app: Flask | None = None) -> list[Any]:
    """Run ``actions`` at once, each in its own thread (and, with ``app``, its own app
    context); their results, or the exception each raised, in order."""
    start = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)

    def run(i: int) -> None:
        with app.app_context() if app is not None else contextlib.nullcontext():
            try:
                start.wait(10)
                results[i] = actions[i]()
            except Exception as exc:  # recorded and asserted on, not lost in the thread
                results[i] = exc
            finally:
                if app is not None:
                    db.session.remove()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a racer hung"
    db.session.expire_all()
    return results


def meet_after(
    monkeypatch: pytest.MonkeyPatch,
    owner: object,
    name: str,
    parties: int,
    rounds: int | None = None,
) -> None:
    """Make the racers wait for each other after ``owner.name`` returns: after every call,
    or after each thread's first ``rounds`` calls (a view checks a link, then its service
    reads it again)."""
    real = getattr(owner, name)
    barrier = threading.Barrier(parties)
    calls = threading.local()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        calls.n = getattr(calls, "n", 0) + 1
        if rounds is None or calls.n <= rounds:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(MEET_SECONDS)
        return result

    monkeypatch.setattr(owner, name, wrapper)


def elsewhere(app: Flask, action: Callable[[], object]) -> None:
    """Run ``action`` and commit it in another thread's session, as another request or
    worker would meanwhile, and wait for it."""

    errors: list[BaseException] = []

    def run() -> None:
        with app.app_context():
            try:
                action()
                db.session.commit()
            except BaseException as exc:  # raised below, in the test's own thread
                errors.append(exc)
            finally:
                db.session.remove()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the other session hung"
    if errors:
        raise errors[0]


def delete_user_elsewhere(app: Flask, user_id: int) -> None:
    """Delete an account from another session (another admin, meanwhile)."""
    from sqlalchemy import delete

    from bastion.models import User

    elsewhere(app, lambda: db.session.execute(delete(User).where(User.id == user_id)))
