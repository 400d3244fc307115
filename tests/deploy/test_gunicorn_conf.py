"""gunicorn.conf.py: accepted by gunicorn, safe defaults, env overrides, working metrics hooks."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.app.base import Application
from gunicorn.config import Config
from gunicorn.workers.gthread import ThreadWorker

# Imported before any test sets PROMETHEUS_MULTIPROC_DIR: prometheus_client picks its value
# class once, at import, and a multiprocess one would outlive the test and break the apps
# that later tests build without the directory.
from prometheus_client.mmap_dict import MmapedDict

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "gunicorn.conf.py"
ENV_NAMES = (
    "BASTION_BIND",
    "GUNICORN_WORKERS",
    "GUNICORN_THREADS",
    "GUNICORN_TIMEOUT",
    "GUNICORN_GRACEFUL_TIMEOUT",
    "GUNICORN_KEEPALIVE",
    "GUNICORN_CLIENT_TIMEOUT",
    "GUNICORN_MAX_REQUESTS",
    "GUNICORN_MAX_REQUESTS_JITTER",
    "GUNICORN_LIMIT_REQUEST_LINE",
    "GUNICORN_LIMIT_REQUEST_FIELDS",
    "GUNICORN_LIMIT_REQUEST_FIELD_SIZE",
    "FORWARDED_ALLOW_IPS",
    "GUNICORN_LOG_LEVEL",
    "PROMETHEUS_MULTIPROC_DIR",
    "GUNICORN_CERT_FILE",
    "GUNICORN_KEY_FILE",
)


class _ConfigOnly(Application):  # type: ignore[misc]
    """Loads gunicorn.conf.py exactly as `gunicorn -c` does, without serving anything."""

    def init(self, parser: Any, opts: Any, args: Any) -> None:
        return None

    def load_config(self) -> None:
        self.namespace = self.load_config_from_file(str(CONF))

    def load(self) -> None:
        return None


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[Config, dict[str, Any]]:
    """Gunicorn's parsed settings and the module namespace, under the given environment."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = _ConfigOnly()
    return app.cfg, app.namespace


def _expected_workers() -> int:
    return max(2, min(len(os.sched_getaffinity(0)), 8))


def test_defaults_are_production_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every setting passes gunicorn's own validation; the defaults are the documented ones."""
    cfg, _ = load(monkeypatch)
    assert cfg.bind == ["0.0.0.0:8000"]
    assert cfg.workers == _expected_workers() <= 8
    assert cfg.threads == 4
    assert cfg.worker_class_str == "bastion.gunicorn_worker.BalancedThreadWorker"
    assert issubclass(cfg.worker_class, ThreadWorker)
    assert cfg.timeout == 30 and cfg.graceful_timeout == 25 and cfg.keepalive == 5
    assert cfg.limit_request_line == 4094
    assert cfg.limit_request_fields == 64
    assert cfg.limit_request_field_size == 8190
    assert cfg.forwarded_allow_ips == ["127.0.0.1"]
    assert cfg.forwarder_headers == [], "no SCRIPT_NAME or PATH_INFO from request headers"
    assert cfg.accesslog is None, "the app logs requests as JSON itself"
    assert cfg.errorlog == "-"
    assert cfg.preload_app is False
    assert cfg.control_socket_disable is True
    assert cfg.max_requests > 0 and cfg.max_requests_jitter > 0
    expected_tmp = "/dev/shm" if Path("/dev/shm").is_dir() else None
    assert cfg.worker_tmp_dir == expected_tmp


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deployments tune the server through environment variables alone."""
    cfg, _ = load(
        monkeypatch,
        BASTION_BIND="127.0.0.1:9000, unix:/tmp/bastion.sock",
        GUNICORN_WORKERS="3",
        GUNICORN_THREADS="8",
        GUNICORN_TIMEOUT="60",
        FORWARDED_ALLOW_IPS="10.0.0.1,10.0.0.2",
        GUNICORN_LIMIT_REQUEST_LINE="2048",
    )
    assert cfg.bind == ["127.0.0.1:9000", "unix:/tmp/bastion.sock"]
    assert cfg.workers == 3 and cfg.threads == 8 and cfg.timeout == 60
    assert cfg.forwarded_allow_ips == ["10.0.0.1", "10.0.0.2"]
    assert cfg.limit_request_line == 2048


def test_bad_numbers_refuse_to_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in a number stops start-up instead of silently using something else."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GUNICORN_WORKERS", "-1")
    with pytest.raises(SystemExit):
        _ConfigOnly()
    monkeypatch.setenv("GUNICORN_WORKERS", "four")
    with pytest.raises(SystemExit):
        _ConfigOnly()
    monkeypatch.delenv("GUNICORN_WORKERS")
    monkeypatch.setenv("GUNICORN_CLIENT_TIMEOUT", "0")  # would make the sockets non-blocking
    with pytest.raises(SystemExit):
        _ConfigOnly()


def test_prometheus_multiprocess_hooks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """on_starting empties the multiprocess directory (keeping it); child_exit drops the dead
    worker's live gauges and folds its counters into the archive file."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_111.db").write_bytes(b"stale")
    (directory / "gauge_livesum_111.db").write_bytes(b"stale")
    cfg, namespace = load(monkeypatch, PROMETHEUS_MULTIPROC_DIR=str(directory))
    assert cfg.on_starting is namespace["on_starting"]
    assert cfg.child_exit is namespace["child_exit"]

    namespace["on_starting"](SimpleNamespace())
    assert directory.is_dir() and list(directory.iterdir()) == []

    for pid, count in ((4242, 2.0), (6464, 3.0)):
        counter = MmapedDict(str(directory / f"counter_{pid}.db"))
        counter.write_value('["c_total", "c_total", {}, "c"]', count, 0.0)
        counter.close()
    (directory / "histogram_7575.db").write_bytes(b"x")  # cut short: left, never fatal
    (directory / "gauge_livesum_4242.db").write_bytes(b"x")
    (directory / "gauge_livesum_5353.db").write_bytes(b"x")
    for pid in (4242, 6464, 7575):
        namespace["child_exit"](SimpleNamespace(), SimpleNamespace(pid=pid))
    # Live gauges of the dead worker dropped; its counters folded into the archive.
    assert sorted(p.name for p in directory.iterdir()) == [
        "counter_archive.db",
        "gauge_livesum_5353.db",
        "histogram_7575.db",
    ]
    archived = list(MmapedDict.read_all_values_from_file(str(directory / "counter_archive.db")))
    assert [(key, value) for key, value, _ts, _pos in archived] == [
        ('["c_total", "c_total", {}, "c"]', 5.0)
    ]

    # A damaged archive (or a full volume) leaves the dead worker's file; it never raises
    # in the master, which would stop it.
    (directory / "counter_archive.db").write_bytes(b"\xff" * 16)
    counter = MmapedDict(str(directory / "counter_8686.db"))
    counter.write_value('["c_total", "c_total", {}, "c"]', 1.0, 0.0)
    counter.close()
    namespace["child_exit"](SimpleNamespace(), SimpleNamespace(pid=8686))
    assert (directory / "counter_8686.db").exists()

    missing = tmp_path / "not-yet"
    _, namespace = load(monkeypatch, PROMETHEUS_MULTIPROC_DIR=str(missing))
    namespace["on_starting"](SimpleNamespace())
    assert missing.is_dir()


def test_hooks_do_nothing_without_multiprocess_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PROMETHEUS_MULTIPROC_DIR the hooks touch nothing (single-process use)."""
    _, namespace = load(monkeypatch)
    namespace["on_starting"](SimpleNamespace())
    namespace["child_exit"](SimpleNamespace(), SimpleNamespace(pid=1))


def test_worker_freezes_its_start_up_objects_out_of_the_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    _cfg, module = load(monkeypatch)
    before = gc.get_freeze_count()
    try:
        module["post_worker_init"](SimpleNamespace())
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()


def test_worker_gets_the_client_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a gunicorn setting: the hook hands it to bastion/gunicorn_worker.py."""
    import gc

    for env, expected in (({}, 10), ({"GUNICORN_CLIENT_TIMEOUT": "3"}, 3)):
        _cfg, module = load(monkeypatch, **env)
        worker = SimpleNamespace()
        try:
            module["post_worker_init"](worker)
        finally:
            gc.unfreeze()
        assert worker.client_timeout == expected
