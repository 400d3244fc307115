"""The production gunicorn settings, for checkouts without the project's gunicorn.conf.py.

Mirrors that file's load-bearing values (gthread, 4 threads, 2 x CPUs + 1 workers capped at
8, keep-alive 5 s, worker recycling, no access log) so the bench measures the same shape.
"""

import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
workers = _int("GUNICORN_WORKERS", min(2 * (_cpus or 1) + 1, 8))
threads = _int("GUNICORN_THREADS", 4)
worker_class = "gthread"
timeout = 30
graceful_timeout = 25
keepalive = 5
max_requests = _int("GUNICORN_MAX_REQUESTS", 2000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 200)
forwarded_allow_ips = "127.0.0.1"
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = None
errorlog = "-"
control_socket_disable = True
preload_app = False
