"""/metrics: guarded by its token, bounded labels, and counters summed over gunicorn workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from bastion.extensions import db
from bastion.observability import counters
from tests.conftest import base_config, build_app
from tests.factories import PASSWORD
from tests.ops.conftest import SharedState
from tests.ops.processes import METRICS_TOKEN, Gunicorn, WebClient
from tests.support.auth import csrf_token

TOKEN = "m" * 40


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse the exposition format into {(sample name, sorted labels): value}."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(
    parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """Sum of a sample over every series whose labels include ``labels``."""
    return sum(
        v for (n, lbls), v in parsed.items() if n == name and set(labels.items()) <= set(lbls)
    )


# ------------------------------------------------------------ in-process (default registry) ---
@pytest.fixture(scope="module")
def metrics_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One app for the whole module: these tests read counters as differences."""
    tmp = tmp_path_factory.mktemp("metrics-app")
    app = build_app(base_config(tmp, f"sqlite:///{tmp / 'bastion.db'}", METRICS_TOKEN=TOKEN))
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.mark.asvs("V13.4.5")
def test_metrics_are_off_without_a_configured_token(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    resp = client.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert resp.status_code == 404
    assert resp.mimetype == "application/problem+json"
    assert b"bastion_" not in resp.data


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
    ],
)
@pytest.mark.asvs("V13.4.5", "V8.2.1")
def test_metrics_refuse_a_missing_or_wrong_token(
    metrics_app: Flask, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    resp = metrics_app.test_client().get("/metrics", headers=headers)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert resp.get_json()["detail"].startswith("Send the metrics token")
    assert b"bastion_http_requests_total" not in resp.data


@pytest.mark.asvs("V13.4.5", "V16.2.4")
def test_metrics_with_token_count_requests_by_endpoint_not_path(metrics_app: Flask) -> None:
    client = metrics_app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = samples(client.get("/metrics", headers=auth).get_data(as_text=True))
    client.get("/healthz")
    client.get("/no-such-page/alice@example.org/secret-path")
    resp = client.get("/metrics", headers=auth)
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    text = resp.get_data(as_text=True)
    after = samples(text)
    name = "bastion_http_requests_total"
    assert (
        value(after, name, endpoint="health.healthz", status="200")
        - value(before, name, endpoint="health.healthz", status="200")
        == 1
    )
    assert (
        value(after, name, endpoint="unmatched", status="404")
        - value(before, name, endpoint="unmatched", status="404")
        == 1
    )
    assert (
        value(after, "bastion_http_request_duration_seconds_count", endpoint="health.healthz") >= 1
    )
    # The raw path (and anything a client put in it) never becomes a label.
    assert "no-such-page" not in text
    assert "alice" not in text


@pytest.mark.asvs("V13.4.5", "V16.2.4")
def test_invented_methods_do_not_become_label_values(metrics_app: Flask) -> None:
    """Any token is a valid HTTP method: each one sent to an unknown path must not open a
    new series (endpoint, method and status all from fixed sets)."""
    client = metrics_app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for method in ("PROPFIND", "X-EVIL-1", "X-EVIL-2", "BREW"):
        client.open(f"/nowhere/{method}", method=method)
    text = client.get("/metrics", headers=auth).get_data(as_text=True)
    methods = {dict(lbls).get("method") for n, lbls in samples(text)
               if n == "bastion_http_requests_total"}
    assert "OTHER" in methods
    assert not {"PROPFIND", "X-EVIL-1", "X-EVIL-2", "BREW"} & methods
    assert "nowhere" not in text


@pytest.mark.asvs("V12.2.1", "V13.4.5")
def test_metrics_over_plain_http_in_production_are_refused_not_redirected(
    make_app: Callable[..., Flask],
) -> None:
    """The scraper's token has crossed in clear; a 308 let a redirect-following scraper
    (Prometheus's default) keep working that way, sending it in clear on every scrape."""
    app = make_app(FORCE_HTTPS=True, METRICS_TOKEN=TOKEN)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    plain = client.get("/metrics", headers=auth, base_url="http://localhost")
    assert plain.status_code == 403
    assert "Location" not in plain.headers
    assert b"bastion_http_requests" not in plain.data
    assert client.get("/metrics", headers=auth).status_code == 200  # over HTTPS it works


@pytest.mark.asvs("V16.3.3")
def test_security_counters_have_bounded_labels(metrics_app: Flask) -> None:
    client = metrics_app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = samples(client.get("/metrics", headers=auth).get_data(as_text=True))
    counters.increment("upload_rejections", reason="Too Large/../<script>" + "x" * 100)
    counters.increment("token_reuse_detected")
    counters.increment("2fa_failures")
    after = samples(client.get("/metrics", headers=auth).get_data(as_text=True))
    reasons = {dict(lbls)["reason"] for n, lbls in after if n == "bastion_upload_rejections_total"}
    assert all(len(r) <= 32 and r.replace("_", "").isalnum() for r in reasons)
    for name in ("bastion_token_reuse_detected_total", "bastion_2fa_failures_total"):
        assert value(after, name) - value(before, name) == 1


@pytest.mark.asvs("V16.3.3")
def test_csrf_failure_is_counted(metrics_app: Flask) -> None:
    client = metrics_app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = samples(client.get("/metrics", headers=auth).get_data(as_text=True))
    assert client.post("/auth/login", data={"username": "a", "password": "b"}).status_code == 400
    csrf_token(client, "/auth/login")
    after = samples(client.get("/metrics", headers=auth).get_data(as_text=True))
    assert (
        value(after, "bastion_csrf_failures_total") - value(before, "bastion_csrf_failures_total")
        == 1
    )


# ------------------------------------------------------------------ gunicorn, 2 workers ---
@pytest.fixture(scope="module")
def server(
    shared_state: SharedState, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    tmp: Path = tmp_path_factory.mktemp("metrics")
    multiproc = tmp / "prometheus"
    multiproc.mkdir()
    # One thread per worker: a busy worker cannot accept, so concurrent requests spread.
    instance = Gunicorn(
        tmp,
        shared_state.env(
            BASTION_METRICS_TOKEN=METRICS_TOKEN,
            PROMETHEUS_MULTIPROC_DIR=str(multiproc),
            # The failures below are about the route's rate limit; the per-account delays
            # (tests/auth/test_throttle.py) would otherwise answer first.
            BASTION_LOGIN_THROTTLE_ACCOUNT_FREE="50",
        ),
        workers=2,
        threads=1,
    )
    try:
        yield instance.start()
    finally:
        instance.stop()


@pytest.mark.slow
@pytest.mark.asvs("V16.3.1", "V16.3.3", "V2.4.1", "V13.4.5")
def test_gunicorn_workers_export_summed_counters(
    server: Gunicorn, shared_state: SharedState
) -> None:
    shared_state.clear_limits()
    web = WebClient(server.url)
    assert web.login("alice", PASSWORD).status_code == 302  # success

    def fail(i: int) -> int:
        client = WebClient(server.url)
        return client.login(f"guess{i}", "not the password at all").status_code

    # Nine more attempts use up the shared "10 per minute" login limit; the next is refused.
    # Each tries another name, so the per-account throttle (5 free failures) does not step in.
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(fail, range(9)))
    assert statuses == [200] * 9
    assert WebClient(server.url).login("alice", PASSWORD).status_code == 429
    # A POST without a CSRF token.
    assert WebClient(server.url).post("/auth/logout").status_code == 400

    assert WebClient(server.url).get("/metrics").status_code == 401
    bad = WebClient(server.url).get("/metrics", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401

    resp = WebClient(server.url).get(
        "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert resp.status_code == 200
    parsed = samples(resp.text)
    assert value(parsed, "bastion_login_failures_total") == 9
    assert value(parsed, "bastion_login_throttled_total") == 1
    assert value(parsed, "bastion_rate_limited_total") == 1
    assert value(parsed, "bastion_csrf_failures_total") == 1
    logins = value(parsed, "bastion_http_requests_total", endpoint="auth.login", method="POST")
    assert logins == 11
    assert (
        value(
            parsed,
            "bastion_http_requests_total",
            endpoint="auth.login",
            method="POST",
            status="429",
        )
        == 1
    )
    assert (
        value(
            parsed,
            "bastion_http_request_duration_seconds_count",
            endpoint="auth.login",
            method="POST",
        )
        == 11
    )
    # Both workers wrote values: what /metrics showed is the sum over processes.
    multiproc = Path(server.env["PROMETHEUS_MULTIPROC_DIR"])
    pids = {p.stem.rsplit("_", 1)[-1] for p in multiproc.glob("counter_*.db")}
    assert len(pids) >= 2, pids
    assert "alice" not in resp.text
    assert "@" not in resp.text


@pytest.mark.slow
@pytest.mark.asvs("V16.3.1")
def test_a_recycled_workers_counts_are_kept_and_its_files_folded(server: Gunicorn) -> None:
    """Each worker gunicorn replaced (max_requests) left its counter and histogram files
    behind until the metrics volume was full; now the master folds them into the archive
    files when the worker exits, and every total stays the same."""
    import os
    import signal
    import time

    multiproc = Path(server.env["PROMETHEUS_MULTIPROC_DIR"])
    for _ in range(6):
        assert WebClient(server.url).get("/").status_code == 200

    def home_views() -> tuple[float, float]:
        resp = WebClient(server.url).get(
            "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        parsed = samples(resp.text)
        return (
            value(parsed, "bastion_http_requests_total", endpoint="main.index", method="GET"),
            value(parsed, "bastion_http_request_duration_seconds_count",
                  endpoint="main.index", method="GET"),
        )

    before = home_views()
    assert before[0] >= 6
    assert server.proc is not None
    master = server.proc.pid
    workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    victim = next(int(pid) for pid in workers if (multiproc / f"counter_{pid}.db").exists())
    os.kill(victim, signal.SIGTERM)  # the master replaces it, as after max_requests
    deadline = time.monotonic() + 40
    while (multiproc / f"counter_{victim}.db").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (multiproc / f"counter_{victim}.db").exists()
    assert not (multiproc / f"histogram_{victim}.db").exists()
    assert (multiproc / "counter_archive.db").exists()
    assert home_views() == before
