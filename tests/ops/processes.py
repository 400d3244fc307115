"""Real servers for operations tests: gunicorn, nginx, a throwaway Redis, a TCP forwarder.

Every process starts in its own session so a test can kill it with everything it forked,
and every helper stops what it started, even when a test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

import redis
import requests

from bastion.api.keys import new_key_entry

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")
NGINX = Path("/usr/sbin/nginx")
REDIS_SERVER = Path("/usr/bin/redis-server")
SECRET_KEY = "ops-tests-" + secrets.token_urlsafe(48)
METRICS_TOKEN = "metrics-" + secrets.token_urlsafe(24)
# One API signing keyset for every instance of a test deployment, as in production: a token
# signed by one instance must verify on the others.
JWT_KEYS = json.dumps([new_key_entry("ops-1")])

# Used only when the project's gunicorn.conf.py is not there: the same multiprocess hooks.
FALLBACK_GUNICORN_CONF = """
import os
from pathlib import Path

bind = os.environ["BASTION_BIND"].split(",")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
worker_class = "gthread"
timeout = 30
graceful_timeout = 5
accesslog = None
errorlog = "-"
control_socket_disable = True


def on_starting(server):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for entry in Path(directory).iterdir():
            entry.unlink()


def child_exit(server, worker):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, directory)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    url: str, *, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        with suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a process and everything in its session; escalate to SIGKILL if it lingers."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def gunicorn_conf(tmp: Path) -> Path:
    real = ROOT / "gunicorn.conf.py"
    if real.exists():
        return real
    path = tmp / "gunicorn.conf.py"
    path.write_text(FALLBACK_GUNICORN_CONF, encoding="utf-8")
    return path


class Gunicorn:
    """``gunicorn -c gunicorn.conf.py 'bastion:create_app()'``, as the container runs it."""

    def __init__(
        self, tmp: Path, env: dict[str, str], *, workers: int = 2, threads: int = 2
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"gunicorn-{self.port}.log"
        self.env = {
            **os.environ,
            "BASTION_ENV": "development",
            "BASTION_SECRET_KEY": SECRET_KEY,
            "BASTION_JWT_KEYS": JWT_KEYS,
            "BASTION_TRUSTED_HOSTS": "127.0.0.1,localhost",
            "BASTION_LOG_LEVEL": "INFO",
            "BASTION_BIND": f"127.0.0.1:{self.port}",
            "GUNICORN_WORKERS": str(workers),
            "GUNICORN_THREADS": str(threads),
            "GUNICORN_MAX_REQUESTS": "0",
            **env,
        }
        self.conf = gunicorn_conf(tmp)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Gunicorn:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(GUNICORN), "-c", str(self.conf), "bastion:create_app()"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self.url + "/healthz", proc=self.proc)
        return self

    def kill(self) -> None:
        """Sudden death of the whole instance (master and workers), as on a node failure."""
        if self.proc is not None:
            stop(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGINT)  # gunicorn's quick shutdown; tests need no grace
        if self._log is not None:
            self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


NGINX_CONF = """
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream bastion_app {{
        server 127.0.0.1:{upstream_1} max_fails=1 fail_timeout=30s;
        server 127.0.0.1:{upstream_2} max_fails=1 fail_timeout=30s;
    }}
    server {{
        listen 127.0.0.1:{listen_port};
        location / {{
            proxy_pass http://bastion_app;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            # Retry on the other instance when one is down; nginx never resends a POST
            # that already reached an instance, so a write is never applied twice.
            proxy_next_upstream error timeout http_502;
        }}
    }}
}}
"""


class Nginx:
    """Debian's nginx run unprivileged from a temporary prefix, round robin over two ports."""

    def __init__(self, tmp: Path, upstream_1: int, upstream_2: int) -> None:
        self.prefix = tmp / "nginx"
        self.prefix.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(
            NGINX_CONF.format(
                prefix=self.prefix,
                upstream_1=upstream_1,
                upstream_2=upstream_2,
                listen_port=self.port,
            ),
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        self.proc = subprocess.Popen(
            [
                str(NGINX),
                "-p",
                str(self.prefix),
                "-c",
                str(self.conf),
                "-e",
                str(self.prefix / "error.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self.url + "/healthz", proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGQUIT)


class ThrowawayRedis:
    """A private redis-server on its own port, so killing it harms no one else."""

    def __init__(self, unix_socket: Path | None = None, args: tuple[str, ...] = ()) -> None:
        """On a TCP port of its own, or only on ``unix_socket`` when one is given; ``args``
        are more redis-server options (``--maxmemory-policy allkeys-lru``)."""
        self.port = 0 if unix_socket else free_port()
        self.unix_socket = unix_socket
        self.args = args
        self.url = f"unix://{unix_socket}" if unix_socket else f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def _answers(self) -> bool:
        with suppress(OSError):
            if self.unix_socket is None:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            else:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(str(self.unix_socket))
            return True
        return False

    def start(self) -> ThrowawayRedis:
        unix = ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        self.proc = subprocess.Popen(
            [
                str(REDIS_SERVER),
                *(unix if self.unix_socket else []),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._answers():
                return self
            time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGKILL)

    def restart(self) -> None:
        """Stop and start again: with no persistence, an empty server."""
        self.stop()
        self.start()

    def flush(self) -> None:
        """Empty it (FLUSHALL) while it runs."""
        redis.Redis.from_url(self.url).flushall()


class TcpForwarder:
    """A TCP proxy to PostgreSQL that can be switched off and on: an outage we control.

    Stopping closes the listening socket AND every open connection, as a database restart
    does; starting listens on the same port again. ``blackhole=True`` accepts connections and
    never answers, like a database host lost behind a network partition.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.blackhole = False

    def start(self, *, blackhole: bool = False) -> TcpForwarder:
        self.blackhole = blackhole
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            with suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            if self.blackhole:
                with self._lock:
                    self._conns.add(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=3)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class WebClient:
    """A small HTTP client that keeps the session cookie by hand.

    The site's cookies are ``Secure`` and these tests speak plain HTTP on loopback, where a
    browser-like cookie jar would withhold them.
    """

    def __init__(self, base_url: str, *, client_ip: str | None = None) -> None:
        self.base_url = base_url
        self.cookies: dict[str, str] = {}
        self.headers = {"X-Forwarded-For": client_ip} if client_ip else {}

    def request(
        self, method: str, path: str, *, base_url: str | None = None, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        headers = {**self.headers, **kwargs.pop("headers", {})}
        resp = requests.request(  # every call is bounded: no test may hang on a dead server
            method,
            (base_url or self.base_url) + path,
            cookies=dict(self.cookies),
            timeout=kwargs.pop("timeout", 15),
            headers=headers,
            **kwargs,
        )
        for cookie in resp.cookies:
            if cookie.value:
                self.cookies[cookie.name] = cookie.value
        return resp

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def csrf(self, path: str, **kwargs: Any) -> str:
        from tests.support.auth import CSRF_RE

        match = CSRF_RE.search(self.get(path, **kwargs).text)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def login(self, username: str, password: str, **kwargs: Any) -> requests.Response:
        token = self.csrf("/auth/login", **kwargs)
        data = {"username": username, "password": password, "csrf_token": token}
        return self.post("/auth/login", data=data, **kwargs)
