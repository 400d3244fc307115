"""Gunicorn settings for running Bastion in production.

Usage: ``gunicorn -c gunicorn.conf.py "bastion:create_app()"``. Every value can be
overridden from the environment so that one image serves compose, Kubernetes and bare
hosts alike; the defaults are the safe ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _env_int(name: str, default: int) -> int:
    """Read a non-negative integer setting, refusing garbage instead of guessing."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = int(raw)
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


def _default_workers() -> int:
    """One worker per usable CPU, at least 2 and at most 8.

    Requests are CPU-bound Python and a process runs Python on one core at a time, so a
    worker per core keeps every core busy; threads cover the waits on PostgreSQL, Redis and
    Argon2 (which releases the GIL). More processes than cores only take turns on them: on
    two cores, with the same load, five workers spent as much CPU per API answer as two and
    up to 30% more per HTML page, and their p99 latency was 3 to 16 times the median
    against 2 to 3 times with two (``make bench``). Two at least, so one worker being
    recycled never leaves the socket unserved. In a container os.cpu_count() reports the
    host's CPUs: set GUNICORN_WORKERS to the CPU limit there.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(2, min(cpus or 1, 8))


bind = [b.strip() for b in os.environ.get("BASTION_BIND", "0.0.0.0:8000").split(",") if b.strip()]

# Threads let one worker overlap I/O (database, Redis, Argon2 releases the GIL) without
# the memory of extra processes; "gthread" is what gunicorn picks for threads > 1 anyway.
workers = _env_int("GUNICORN_WORKERS", _default_workers())
threads = _env_int("GUNICORN_THREADS", 4)
# gthread, accepting only while a thread is free (see bastion/gunicorn_worker.py).
worker_class = "bastion.gunicorn_worker.BalancedThreadWorker"

# With threads this is not a limit on a request: the master restarts a worker whose main loop
# stops reporting for this long (a worker hung whole), and the main loop keeps reporting while
# a thread runs a long request. Nothing here ends such a request; its client gets the proxy's
# 504 after proxy_read_timeout (35 s) while the thread runs on, each PostgreSQL statement
# bounded by statement_timeout (15 s, bastion/config.py).
timeout = _env_int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 25)
# Longer than the proxy's idle upstream timeout (4 s), so the proxy always closes first
# and never sends a request on a connection gunicorn is closing.
keepalive = _env_int("GUNICORN_KEEPALIVE", 5)
# How long a thread waits for a client: for the whole request head, then for each read of
# the body and each write of the answer. nginx sends and reads at once (it buffers both
# ways; the Ingress is told to as well, ingress-nginx streams answers by default); the limit
# is for what reaches this port directly, so that clients stalling on purpose cannot hold
# every thread. Not a gunicorn setting: post_worker_init hands it to the worker
# (bastion/gunicorn_worker.py).
_CLIENT_TIMEOUT = _env_int("GUNICORN_CLIENT_TIMEOUT", 10)
if _CLIENT_TIMEOUT < 1:
    raise ValueError("GUNICORN_CLIENT_TIMEOUT must be at least 1 (seconds)")

# Recycle workers now and then so that a slow leak can never take a pod down. Not too
# often: a new worker costs about a second of CPU (imports, create_app) that the other
# workers feel as latency, and `make bench` shows no growth in a worker's memory between
# 10k and 50k requests. The jitter is half the lifetime: workers share the load evenly, so
# with a jitter of a tenth (2000) the two workers of a 2-core host reached their limit
# within seconds of each other, a minute apart, and the host served on a booting worker
# and a lone one at once (seen in `make bench`'s server log).
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 20000)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 10000)

# Request-header limits: a second line of defence behind the proxy's own buffers.
limit_request_line = _env_int("GUNICORN_LIMIT_REQUEST_LINE", 4094)
limit_request_fields = _env_int("GUNICORN_LIMIT_REQUEST_FIELDS", 64)
limit_request_field_size = _env_int("GUNICORN_LIMIT_REQUEST_FIELD_SIZE", 8190)

# TLS on the app's own port. nginx, the ingress controller, Prometheus and the health check
# reach gunicorn over the internal network; with a certificate and key the port speaks TLS
# only (no plain-HTTP fallback on it) and, with Python's defaults, TLS 1.2 at least. The
# certificate comes from the deployment's internal CA, which every client pins
# (docs/deployment.md#tls).
certfile = os.environ.get("GUNICORN_CERT_FILE", "").strip() or None
keyfile = os.environ.get("GUNICORN_KEY_FILE", "").strip() or None
if (certfile is None) != (keyfile is None):
    raise ValueError("set both GUNICORN_CERT_FILE and GUNICORN_KEY_FILE, or neither")

# Only these peers may set X-Forwarded-Proto for gunicorn itself. Client addresses and
# the scheme seen by Flask come from ProxyFix with BASTION_PROXY_HOPS, not from here.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# And only that header: gunicorn's default also takes X-Forwarded-Ssl and X-Forwarded-Protocol,
# which the proxy does not overwrite and ProxyFix does not read. A client whose headers a
# loopback proxy passes on could send one with no X-Forwarded-Proto and be served as HTTPS
# over plain HTTP (no redirect to HTTPS), or send one that contradicts the proxy's and get a
# 400 for it.
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
# And nothing else: by default gunicorn also takes SCRIPT_NAME and PATH_INFO request headers
# from those peers, so a client whose headers a sidecar or proxy on loopback passes on could
# mount the app under a path of its choosing (links, routing and the path it logs follow)
# or get a 500 naming the path. The app is never mounted under a prefix (ProxyFix x_prefix=0).
forwarder_headers = ""

# The heartbeat file is fchmod()ed constantly; on a disk-backed (or read-only) /tmp that
# blocks workers, so use shared memory when there is some.
# (A per-worker file in a directory only the container uses, not a shared temp path.)
_SHM = Path("/dev/shm")  # noqa: S108
worker_tmp_dir = str(_SHM) if _SHM.is_dir() else None

# The app writes one JSON line per request itself; a second, unstructured access log
# would only duplicate it (and could log tokens in URLs).
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# gunicorn's own lines (worker boots and timeouts, refused requests) as the app's JSON, one
# object per line, without the request lines it quotes (bastion/observability/gunicorn_log.py).
logger_class = "bastion.observability.gunicorn_log.JSONLogger"
proc_name = "bastion"

# No runtime management socket: nothing in production should resize or reload the
# server except a deployment, and a read-only root filesystem has no place for it.
control_socket_disable = True

# preload_app stays off: create_app() opens database pools and Redis clients that must
# not be shared across fork(), and each worker building its own app keeps restarts and
# `kill -HUP` reloads simple. The memory saved by preloading is small for this app.
preload_app = False

_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
if not _MULTIPROC_DIR:
    # Set but empty, prometheus_client would write its files into the working directory.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


def on_starting(server: Any) -> None:
    """Start every run with an empty Prometheus multiprocess directory.

    Files left by a previous run would be summed into the new counters, so the directory is
    emptied (not removed: it may be a mount point) before any worker exists.
    """
    if not _MULTIPROC_DIR:
        return
    directory = Path(_MULTIPROC_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        if entry.is_file() or entry.is_symlink():
            entry.unlink()


def post_worker_init(worker: Any) -> None:
    """Keep what the app built at start-up out of the garbage collector's sight, and give the
    worker its client timeout.

    A full collection walks every tracked object: after create_app() that is about 130k
    objects and 70 ms during which the worker's threads stand still, which shows as the
    tail of the latency distribution. Those objects live as long as the process and never
    become garbage; frozen, later collections skip them.
    """
    import gc

    gc.collect()
    gc.freeze()
    worker.client_timeout = _CLIENT_TIMEOUT


def pre_request(worker: Any, req: Any) -> None:
    """gunicorn's own debug line for each request, with the path as the app's request log
    shows it: its default wrote ``GET /auth/reset/<token>`` whole, before the app ran.
    Nothing is done at the usual levels (this runs for every request)."""
    if worker.log.error_log.isEnabledFor(10):  # logging.DEBUG
        from bastion.observability.redaction import redact_path

        worker.log.debug("%s %s", req.method, redact_path(req.path))


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges so /metrics reports only running processes, and fold
    its counters and histograms into the archive files, so the directory does not grow
    with every recycled worker (``max_requests``) until its volume is full."""
    if not _MULTIPROC_DIR:
        return
    from prometheus_client import multiprocess

    from bastion.observability.multiproc_archive import archive_dead_worker

    multiprocess.mark_process_dead(worker.pid, _MULTIPROC_DIR)  # type: ignore[no-untyped-call]
    archive_dead_worker(_MULTIPROC_DIR, worker.pid)


def when_ready(server: Any) -> None:
    """While no admin exists, say how to create one (the master, once per start).

    The one-time link itself only on a terminal, or with BASTION_ANNOUNCE_SETUP=1: in a
    container standard error is a log that a collector keeps and others read, and the link
    creates an admin. Otherwise the line names ``flask --app bastion setup-url``, which prints
    a link to the terminal of whoever runs it. BASTION_ANNOUNCE_SETUP=0 says nothing.
    """
    setting = os.environ.get("BASTION_ANNOUNCE_SETUP", "").strip()
    if setting == "0":
        return
    show_link = setting == "1" or _on_a_terminal()
    try:
        from bastion import create_app
        from bastion.extensions import db
        from bastion.setup.services import announce_setup_if_needed

        app = create_app()
        base = (
            app.config.get("PUBLIC_URL")
            or f"https://{(app.config['TRUSTED_HOSTS'] or ['localhost'])[0]}"
        )
        with app.app_context():
            announce_setup_if_needed(base, show_link=show_link)
            db.engine.dispose()  # no connection may cross the fork into workers
    except Exception as exc:  # a failed announcement must not stop serving
        server.log.warning("setup link not announced: %s", exc)


def _on_a_terminal() -> bool:
    """Whether gunicorn's standard error is a terminal someone watches, not a collected log."""
    import sys

    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False
