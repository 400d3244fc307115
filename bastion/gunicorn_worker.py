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

It also reads to its end a request body the application left unread (an upload refused
with 413, 415 or 403 before it was read) before it takes the connection's next request.
Stock gthread gives up after 64 KiB and closes the connection it has just answered with
"Connection: keep-alive": nginx, which reuses its upstream connections, then sends another
client's request on a connection that is closing and answers that client with 502 (and
the sender of a large body too, its upload cut off mid-write).

And it bounds how long a client can hold a thread. Stock gthread hands a connection to a
thread at its first bytes and then reads and writes with no timeout: a client that sent
half a request head, or less body than it announced, kept a thread for as long as it
pleased, and as many such clients as threads stopped the worker (nginx buffers in front,
but the health check and the internal TLS port reach gunicorn directly). A thread now
gets its request head within ``client_timeout`` in total, a deadline rather than a time
per read, so trickling a byte every few seconds does not stretch it. Past it the main
loop shuts the socket down under the thread, which sees the end of the connection
(nothing but a debug line is logged), and this also covers a stalled TLS handshake.
Once the head is in, each read of the body and each write of the response has
``client_timeout`` too (a socket timeout; the body and response may be large, so there
is no total), after which the connection is closed.

Last, it words the answers gunicorn gives itself, without the app: a malformed request
line, method or header, an unsupported HTTP version, a request line or headers over the
``limit_request_*`` settings, a malformed chunked body, and an application error past the
app's own handlers. gunicorn's status (505 instead of its 400 for a well-formed version
other than HTTP/1.x), a fixed plain-text sentence instead of its HTML page quoting the
request, ``Connection: close``, and the headers the app gives its data answers
(``bastion/security/header_values.py``, HSTS over TLS as the app's configuration says).
gunicorn still logs each refusal as before.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from contextlib import suppress
from typing import Any

from gunicorn import util
from gunicorn.http.errors import (
    ChunkMissingTerminator,
    ExpectationFailed,
    InvalidChunkExtension,
    InvalidChunkSize,
    InvalidHeader,
    InvalidHeaderName,
    InvalidHTTPVersion,
    InvalidRequestLine,
    InvalidRequestMethod,
    InvalidSchemeHeaders,
    LimitRequestHeaders,
    LimitRequestLine,
    ObsoleteFolding,
    UnsupportedTransferCoding,
)
from gunicorn.workers.gthread import DEFAULT_WORKER_DATA_TIMEOUT, ThreadWorker

from bastion.security.header_values import server_answer_headers

ACCEPT_GRACE = 0.01  # seconds a busy worker leaves a new connection to its siblings
# An unread body is drained up to this size: more than nginx lets through
# (client_max_body_size 12m in deploy/nginx/bastion.conf), so what the proxy sends is
# always read. The time is bounded as in gunicorn (DEFAULT_WORKER_DATA_TIMEOUT, 5 s).
DRAIN_MAX_BYTES = 16 * 1024 * 1024
# Seconds a client has for its request head, and for each read or write after it. Set from
# GUNICORN_CLIENT_TIMEOUT by gunicorn.conf.py (post_worker_init); this is its default. More
# than gunicorn's 5 s wait for a new connection's first bytes, which frees the thread itself.
CLIENT_TIMEOUT = 10
# What a request gunicorn refuses is told, after the status's phrase: a fixed sentence per
# kind of error, never the request's bytes (gunicorn's page quoted the line or header it
# could not parse). By exact type: a subclass may be another kind of error, such as an
# invalid response header, which is the app's fault and a 500.
REFUSALS: dict[type[BaseException], str] = {
    InvalidRequestLine: "the request line is malformed.",
    InvalidRequestMethod: "the request method is malformed.",
    InvalidHTTPVersion: "the HTTP version is malformed.",
    InvalidHeaderName: "a header name is invalid.",
    InvalidHeader: "a header is malformed or contradicts another.",
    ObsoleteFolding: "a header is folded over several lines.",
    LimitRequestLine: "the request line is longer than this server accepts.",
    LimitRequestHeaders: "the request has more or longer headers than this server accepts.",
    UnsupportedTransferCoding: "the request's transfer coding is not supported.",
    ExpectationFailed: "the request's Expect header cannot be met.",
    InvalidSchemeHeaders: "the forwarded scheme headers contradict each other.",
    InvalidChunkSize: "the chunked request body is malformed.",
    ChunkMissingTerminator: "the chunked request body is malformed.",
    InvalidChunkExtension: "the chunked request body is malformed.",
}
UNSUPPORTED_VERSION = "this server speaks HTTP/1.0 and HTTP/1.1."
_SENT_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ([ -~]+)\r\n")  # the status line gunicorn writes


class BalancedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """``gthread`` that lets an idle sibling take a new connection first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._paused_until: float | None = None  # not watching the socket until then
        self.client_timeout: float = CLIENT_TIMEOUT
        # Connections a thread holds while it waits for their request head, with the time
        # the head is due by. Threads add and remove them; the main loop ends the late ones.
        self._heads_due: dict[Any, float] = {}
        self._heads_lock = threading.Lock()
        self._answer_headers = server_answer_headers(secure=False, hsts_preload=False)

    def load_wsgi(self) -> None:
        """Load the app, then take the HSTS settings for gunicorn's own answers from it."""
        super().load_wsgi()
        config = getattr(self.wsgi, "config", None)  # a Flask app's; other apps have none
        preload = isinstance(config, dict) and bool(config.get("HSTS_PRELOAD"))
        self._answer_headers = server_answer_headers(
            secure=bool(self.cfg.is_ssl), hsts_preload=preload
        )

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Answer what gunicorn refused as plain text with the app's headers.

        gunicorn's own handler still runs, for its log line and its choice of status, but
        writes to a stand-in for the socket; what reaches the client is built here.
        """
        unsent = _Unsent()
        super().handle_error(req, unsent, addr, exc)
        found = _SENT_STATUS.match(unsent.data)
        status, reason = (int(found[1]), found[2].decode()) if found else (500, "Internal Server Error")
        detail = REFUSALS.get(type(exc))
        if isinstance(exc, InvalidHTTPVersion) and isinstance(exc.version, tuple):
            # Well-formed, but HTTP/0.9 or 2.0 and up: not a malformed request (RFC 9110 15.6.6).
            status, reason, detail = 505, "HTTP Version Not Supported", UNSUPPORTED_VERSION
        text = f"{reason}: {detail}" if detail else f"{reason}."
        answer = _plain_answer(f"{status} {reason}", text, self._answer_headers)
        try:
            util.write_nonblock(client, answer)
        except Exception:  # the client is gone: nothing more to tell it
            self.log.debug("Failed to send error message.")

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
        self._end_late_heads()  # the loop turns at least once a second

    def handle(self, conn: Any) -> Any:
        """Serve the connection's next request; its head is due within ``client_timeout``."""
        with self._heads_lock:
            self._heads_due[conn] = time.monotonic() + self.client_timeout
        try:
            return super().handle(conn)
        finally:
            with self._heads_lock:
                self._heads_due.pop(conn, None)

    def handle_request(self, req: Any, conn: Any) -> bool:
        """Run the app for a request whose head is in; every later read or write is bounded.

        A write that times out is a client that stopped reading: the connection closes
        with a debug line, where gunicorn logged an OSError without an errno as a socket
        error with its traceback. (A body read that times out inside the app is an
        ``OSError`` that Werkzeug answers as a disconnected client, 400.)
        """
        with self._heads_lock:
            if self._heads_due.pop(conn, None) is None:  # ended as late meanwhile
                raise StopIteration("request head not received in time")
        conn.sock.settimeout(self.client_timeout)
        try:
            return bool(super().handle_request(req, conn))
        except TimeoutError as exc:
            raise StopIteration(f"client timed out: {exc}") from None

    def _end_late_heads(self) -> None:
        """Shut down the sockets whose request head is overdue, waking their threads.

        Only shut down, never closed here: the thread still owns the socket and closes it.
        The plain socket's shutdown is called even on a TLS one, whose own would also drop
        its TLS state under the thread. A socket being wrapped in TLS refuses (it has no
        file descriptor for that instant) and is tried again at the next turn of the loop.
        HTTP/2 (off in gunicorn.conf.py) has no single head and keeps gunicorn's timeouts.
        """
        now = time.monotonic()
        with self._heads_lock:
            late = [c for c, due in self._heads_due.items() if due <= now and not c.is_http2]
            for conn in late:
                with suppress(OSError):
                    socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)
                    del self._heads_due[conn]

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

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        """Keep the connection only once the unread rest of the request body is read.

        The response has already promised keep-alive; breaking that promise makes a proxy
        fail the next request it sends on the connection. So gunicorn's own drain runs as
        stock gthread runs it (bounded by the data timeout; a stalled body closes the
        connection), only with ``DRAIN_MAX_BYTES`` instead of its 64 KiB.
        """
        if not keepalive:
            return False
        deadline = time.monotonic() + DEFAULT_WORKER_DATA_TIMEOUT
        try:
            return bool(conn.parser.finish_body(deadline=deadline, max_bytes=DRAIN_MAX_BYTES))
        except Exception:  # a malformed chunk, a reset: where the next request starts is
            # unknown and this request is answered. Let through, gunicorn's error handler
            # wrote a 400 after the 200, an answer to no request that a client reusing the
            # connection takes for the answer to its next one.
            return False


class _Unsent:
    """Stands in for the client socket in gunicorn's error handler: keeps what it would
    have sent, of which only the status is used."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0  # non-blocking: gunicorn then writes at once, with no mode switching

    def sendall(self, data: bytes) -> None:
        self.data += data


def _plain_answer(status: str, text: str, headers: list[tuple[str, str]]) -> bytes:
    """A whole HTTP/1.1 answer with a short plain-text body, after which the server closes."""
    body = f"{text}\n".encode()
    lines = [
        f"HTTP/1.1 {status}",
        f"Date: {util.http_date()}",
        "Connection: close",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body
