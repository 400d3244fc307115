"""While Redis is down, the per-process limits forget a client once its window has ended.

The attack: Redis is unreachable (or made so), Flask-Limiter counts in each worker's memory,
and a client with many addresses (an IPv6 /48 is 65,536 clients) sends each request from a
new one. ``limits``' memory store kept every key it had seen, emptied, for the life of the
worker, and walked them all every 10 ms: memory and CPU grew with every request, long after
the windows had ended.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from bastion.extensions import limiter

URL = "/api/v1/articles"


def _closed_port() -> int:
    with socket.socket() as sock:  # a port just given back: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_down(make_app: Callable[..., Flask]) -> Iterator[Callable[[str], Flask]]:
    """Builds an app whose Redis refuses connections, with the API's limit given (read on
    every request; the default limit is set once per process)."""

    def build(api_limit: str) -> Flask:
        return make_app(REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0",
                        API_RATE_LIMIT=api_limit)

    yield build
    limiter._storage_dead = False  # the limiter is shared by every app of the test run
    make_app()  # and leave it on a store that exists


@pytest.mark.asvs("V2.4.1")
def test_the_fallback_forgets_clients_whose_windows_ended(
    redis_down: Callable[[str], Flask],
) -> None:
    client = redis_down("1000 per second").test_client()
    for n in range(200):  # every request from a new /64
        resp = client.get(URL, environ_base={"REMOTE_ADDR": f"2001:db8:{n:x}::1"})
        assert resp.status_code == 401  # counted before the token is asked for
    store = limiter._fallback_storage
    assert store.events  # counted in this worker's memory, as they should be
    time.sleep(1.2)  # every window ends
    client.get(URL, environ_base={"REMOTE_ADDR": "192.0.2.1"})  # the timer runs
    deadline = time.monotonic() + 2
    while len(store.events) > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(store.events) <= 1


@pytest.mark.asvs("V2.4.1")
def test_the_fallback_still_counts_within_a_window(redis_down: Callable[[str], Flask]) -> None:
    client = redis_down("3 per minute").test_client()
    statuses = [client.get(URL, environ_base={"REMOTE_ADDR": "2001:db8::1"}).status_code
                for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
