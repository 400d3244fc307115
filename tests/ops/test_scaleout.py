"""Two gunicorn instances behind nginx, sharing PostgreSQL and Redis: one site, not two.

Both instances share the API signing keyset (``processes.JWT_KEYS``), the refresh-token
table (PostgreSQL) and the revocation list (Redis), so an API token behaves the same
whichever instance sees it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.factories import PASSWORD
from tests.ops.conftest import SharedState
from tests.ops.processes import Gunicorn, Nginx, WebClient

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@dataclass
class Cluster:
    a: Gunicorn
    b: Gunicorn
    lb: Nginx
    state: SharedState


@pytest.fixture(scope="module")
def cluster(
    shared_state: SharedState, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("scaleout")
    # The login test is about the route's shared rate limit; the per-account delays
    # (tests/auth/test_throttle.py) would otherwise answer first. The fail-over test posts
    # 40 comments as one account, over its per-account comment budget.
    env = shared_state.env(
        BASTION_PROXY_HOPS="1",
        BASTION_LOGIN_THROTTLE_ACCOUNT_FREE="50",
        BASTION_COMMENT_WRITE_RATE_LIMIT="100 per minute",
    )
    a = Gunicorn(tmp, env, workers=1, threads=4)
    b = Gunicorn(tmp, env, workers=1, threads=4)
    lb: Nginx | None = None
    try:
        a.start()
        b.start()
        lb = Nginx(tmp, a.port, b.port).start()
        yield Cluster(a, b, lb, shared_state)
    finally:
        if lb is not None:
            lb.stop()
        a.stop()
        b.stop()


@pytest.fixture
def fresh_limits(cluster: Cluster) -> Cluster:
    cluster.state.clear_limits()
    return cluster


def _posted_logins(instance: Gunicorn) -> int:
    """Login attempts an instance answered, from its own JSON request log."""
    count = 0
    for line in instance.output().splitlines():
        if line.startswith("{") and '"path":"/auth/login"' in line and '"method":"POST"' in line:
            count += 1
    return count


@pytest.mark.asvs("V2.4.1", "V6.3.1")
def test_login_rate_limit_holds_across_instances(fresh_limits: Cluster) -> None:
    c = fresh_limits
    # The balancer alternates: each instance sees five of these ten failures, so neither
    # would refuse the eleventh on its own count.
    via_lb = WebClient(c.lb.url)
    token = via_lb.csrf("/auth/login")
    before = {g: _posted_logins(g) for g in (c.a, c.b)}

    def attempt(username: str, password: str) -> requests.Response:
        data = {"username": username, "password": password, "csrf_token": token}
        return via_lb.post("/auth/login", data=data)

    # A different name each time, so the per-account sign-in throttle (also shared, tested
    # with the accounts) stays out of the way and the per-client route limit is what refuses.
    failures = [attempt(f"guess{i}", "wrong password here").status_code for i in range(10)]
    assert failures == [200] * 10
    assert all(_posted_logins(g) - before[g] == 5 for g in (c.a, c.b))
    refused = attempt("carol", PASSWORD)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    # Asked directly (same client address), each instance refuses as well.
    for instance in (c.a, c.b):
        assert WebClient(instance.url).login("carol", PASSWORD).status_code == 429


@pytest.mark.asvs("V7.4.1", "V7.2.1")
def test_session_from_a_works_on_b_and_revocation_on_b_ends_it_on_a(fresh_limits: Cluster) -> None:
    c = fresh_limits
    web = WebClient(c.a.url, client_ip="203.0.113.6")
    assert web.login("alice", PASSWORD).status_code == 302
    # Signed in, the login page sends you on: on the other instance too.
    assert web.get("/auth/login", base_url=c.b.url).status_code == 302
    copied = dict(web.cookies)

    token = web.csrf("/", base_url=c.b.url)
    assert web.post("/auth/logout", data={"csrf_token": token}, base_url=c.b.url).status_code == 302

    replay = WebClient(c.a.url, client_ip="203.0.113.6")
    replay.cookies = copied  # the cookie as it was before logout, replayed on instance A
    resp = replay.get("/auth/login")
    assert resp.status_code == 200
    assert 'name="password"' in resp.text


def _api_sign_in(instance: Gunicorn, client_ip: str) -> tuple[WebClient, dict[str, str]]:
    api = WebClient(instance.url, client_ip=client_ip)
    resp = api.post("/api/v1/auth/token", json={"username": "bob", "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    return api, resp.json()


@pytest.mark.asvs("V7.4.1", "V9.1.1")
def test_refresh_rotated_on_a_cannot_be_reused_on_b(fresh_limits: Cluster) -> None:
    c = fresh_limits
    api, first = _api_sign_in(c.a, "203.0.113.21")
    rotated = api.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200
    second = rotated.json()
    # B has never seen this client: it still knows the old refresh token was used.
    reuse = api.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}, base_url=c.b.url
    )
    assert reuse.status_code == 401
    assert reuse.headers["Content-Type"].startswith("application/problem+json")
    # Reuse revoked the whole family everywhere: the tokens A just issued are dead on A.
    again = api.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert again.status_code == 401
    me = api.get("/api/v1/me", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert me.status_code == 401


@pytest.mark.asvs("V7.4.1", "V7.2.1")
def test_token_revoked_on_b_is_refused_on_a(fresh_limits: Cluster) -> None:
    c = fresh_limits
    api, pair = _api_sign_in(c.a, "203.0.113.22")
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    assert api.get("/api/v1/me", headers=bearer).status_code == 200
    assert api.get("/api/v1/me", headers=bearer, base_url=c.b.url).status_code == 200
    for token in (pair["access_token"], pair["refresh_token"]):
        revoked = api.post("/api/v1/auth/revoke", json={"token": token}, base_url=c.b.url)
        assert revoked.status_code == 204
    assert api.get("/api/v1/me", headers=bearer).status_code == 401
    refresh = api.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401


def _comment(lb_url: str, article_id: int, bearer: dict[str, str], marker: str) -> int:
    try:
        resp = requests.post(
            f"{lb_url}/api/v1/articles/{article_id}/comments",
            json={"body": f"marker {marker}"},
            headers=bearer,
            timeout=15,
        )
    except requests.RequestException:
        return 0
    return resp.status_code


def _published_article(state: SharedState, tmp: Path) -> int:
    from tests.conftest import base_config, build_app
    from tests.factories import ArticleFactory

    app = build_app(base_config(tmp, state.database_url))
    from bastion.extensions import db

    with app.app_context():
        article_id = int(ArticleFactory().id)
        db.engine.dispose()
    return article_id


@pytest.mark.asvs("V16.5.2")
def test_killing_one_instance_mid_load_loses_no_committed_write(
    fresh_limits: Cluster, tmp_path: Path
) -> None:
    """Runs last in this module: instance A stays dead afterwards. Every comment the site
    acknowledged (201) is in the database, whichever instance took it."""
    c = fresh_limits
    article_id = _published_article(c.state, tmp_path)
    token = requests.post(
        c.lb.url + "/api/v1/auth/token",
        json={"username": "carol", "password": PASSWORD},
        timeout=15,
    )
    assert token.status_code == 200, token.text
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    markers = [uuid.uuid4().hex for _ in range(40)]
    results: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {pool.submit(_comment, c.lb.url, article_id, bearer, m): m for m in markers}
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = future.result()
            if done == 10:
                c.a.kill()
    acknowledged = {m for m, status in results.items() if status == 201}
    # 502: the balancer found A dead. 0: A died while sending its answer, so the client got
    # a cut connection (only the up to 4 requests in flight at the kill can end so). Neither
    # counts as acknowledged; only 201s must be stored.
    assert set(results.values()) <= {0, 201, 502}, results
    assert list(results.values()).count(0) <= 4, results
    assert len(acknowledged) >= 30, "the surviving instance did not take over"

    engine = create_engine(c.state.database_url)
    try:
        with engine.connect() as conn:
            bodies = conn.execute(
                text("SELECT body FROM comments WHERE article_id = :a"), {"a": article_id}
            ).scalars().all()
    finally:
        engine.dispose()
    stored = {body.rsplit(" ", 1)[-1] for body in bodies}
    missing = acknowledged - stored
    assert not missing, f"{len(missing)} acknowledged writes were lost"

    # The survivor keeps serving everything that comes through the balancer.
    for _ in range(6):
        assert requests.get(c.lb.url + "/", timeout=10).status_code == 200
