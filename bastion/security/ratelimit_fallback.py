"""The per-process store Flask-Limiter counts in while Redis is down, forgetting idle clients.

Why: ``limits``' ``MemoryStorage`` drops a moving window's expired entries but keeps the
key itself, with an empty list, for the life of the process, and its expiry timer walks
every key ever seen each time it runs (every 10 ms while requests are counted). During an
outage a client with many addresses (every /64 of an IPv6 /48 is a client of its own)
could add a key per request: measured, 200,000 of them held about 50 MB in each worker and
made each pass of the timer take about 2 s, slowing every request of the worker, long
after their windows had ended. Here a key goes once its last entry has expired, so the
store holds only the clients counted within their windows.

Its per-key locks are a fixed set shared by hash: a lock dropped with its key while another
thread waits on it would let a second thread count the same key under a new lock.
"""

from __future__ import annotations

import threading
from typing import Any

from limits.storage import MemoryStorage

# limits' timer calls this name (``self.__expire_events`` inside MemoryStorage).
_EXPIRE = "_MemoryStorage__expire_events"
if not callable(getattr(MemoryStorage, _EXPIRE, None)):  # pragma: no cover - limits changed
    raise ImportError("limits.storage.MemoryStorage has no expiry pass to extend")

LOCK_STRIPES = 64


class StripedLocks:
    """``MemoryStorage.locks``' interface over a fixed set of re-entrant locks."""

    def __init__(self, stripes: int = LOCK_STRIPES) -> None:
        self._locks = tuple(threading.RLock() for _ in range(stripes))

    def __getitem__(self, key: str) -> threading.RLock:
        return self._locks[hash(key) % len(self._locks)]

    def pop(self, key: str, default: Any = None) -> Any:
        return default  # nothing per key to forget

    def clear(self) -> None:
        """Nothing per key to forget."""


class PruningMemoryStorage(MemoryStorage):
    """``MemoryStorage`` whose expiry pass also removes the keys it has emptied."""

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: str):
        super().__init__(uri, wrap_exceptions, **options)
        self.locks = StripedLocks()  # type: ignore[assignment]

    def _MemoryStorage__expire_events(self) -> None:  # noqa: N802 - limits' own name
        getattr(super(), _EXPIRE)()
        for key in list(self.events):  # as limits' own pass: no tuples, a copy of the keys
            with self.locks[key]:  # acquire_entry fills a key under this lock
                if not self.events.get(key, True):
                    del self.events[key]


def install(limiter: Any) -> None:
    """After ``limiter.init_app``: count in a pruning store while the shared one is down."""
    if getattr(limiter, "_fallback_limiter", None) is None:  # no fallback configured
        return
    storage = PruningMemoryStorage()
    limiter._fallback_storage = storage
    limiter._fallback_limiter = type(limiter._fallback_limiter)(storage)
