"""gunicorn's threaded worker, leaving a new connection to an idle sibling when it has none.

Stock ``gthread`` workers all wait on the one listening socket and accept whenever it is
readable, up to ``worker_connections`` (1000) each. Requests are CPU-bound Python, and one
process runs Python on one core at a time, so where a connection lands decides which core
serves it for as long as it stays open. The worker that wakes first accepts a burst of new
connections (a proxy opening its keep-alive pool, a client opening several at once) before
the others have woken: on a two-core machine that regularly left every connection on one
worker, which then served half of what the machine could while the other idled, with
latency to match.

This worker, when each of its threads already has a connection to serve (being handled
or waiting for a thread), does not take a new connection at once: it stops watching the
listening socket for ``ACCEPT_GRACE`` so that a worker with a free thread takes it. If
connections are still waiting after that (every worker is busy), it takes as many as it
has threads and looks again: busy workers share the queue in turns instead of one of them
emptying it, a connection waits a few grace periods at most, and nothing is refused.
Connections resting between requests (keep-alive) and those still waiting for their first
bytes do not hold a thread and do not count.

gunicorn has no setting for this, hence a small subclass. The socket stays shared: one
``SO_REUSEPORT`` socket per worker would balance too, but drops the connections queued on
a worker's socket each time that worker is recycled.
"""

from __future__ import annotations

import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

ACCEPT_GRACE = 0.01  # seconds a busy worker leaves a new connection to its siblings


class BalancedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """``gthread`` that lets an idle sibling take a new connection first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._paused_until: float | None = None  # not watching the socket until then

    def _has_free_thread(self) -> bool:
        resting = len(self.keepalived_conns) + len(self.pending_conns)
        return bool(self.nr_conns - resting < self.cfg.threads)

    def accept(self, listener: Any) -> None:
        if self._has_free_thread() or not self.alive:
            super().accept(listener)
            return
        self._paused_until = time.monotonic() + ACCEPT_GRACE
        super().set_accept_enabled(False)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and self._paused_until is None)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if self._paused_until is not None:
            left = self._paused_until - time.monotonic()
            if left > 0:
                timeout = min(timeout, left)
            else:
                self._paused_until = None
                if self.alive:
                    self._take_queued()
                    self.set_accept_enabled(self.nr_conns < self.worker_connections)
        super().wait_for_and_dispatch_events(timeout)

    def _take_queued(self) -> None:
        """Up to one connection per thread of those that waited out the grace period."""
        room = min(self.cfg.threads, self.worker_connections - self.nr_conns)
        for listener in self.sockets:
            while room > 0:
                before = self.nr_conns
                super().accept(listener)  # a sibling may have taken it: gunicorn ignores EAGAIN
                if self.nr_conns == before:
                    break
                room -= 1
