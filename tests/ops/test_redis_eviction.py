"""Production refuses to start on a Redis whose ``maxmemory-policy`` evicts keys.

Against real servers: private ones started with the policy under test (or an ACL that
refuses ``INFO``), the shared one (``noeviction``), and a port nobody listens on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bastion.config import ConfigError
from tests.ops.processes import ThrowawayRedis, free_port
from tests.test_config import _production

pytestmark = [pytest.mark.redis]

SHARED = "redis://127.0.0.1:6379/0"
# An evicting server whose user may run anything but INFO, as the compose ACL refuses it.
INFO_REFUSED = pytest.mark.parametrize("redis_server", [
    ["--maxmemory-policy", "allkeys-lru", "--user", "default", "on", "nopass", "~*", "&*",
     "+@all", "-info"],
], indirect=True, ids=["info-refused"])


@pytest.fixture
def redis_server(request: pytest.FixtureRequest) -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis(args=tuple(request.param)).start()
    try:
        yield server
    finally:
        server.stop()


def _acl_log(server: ThrowawayRedis) -> list[object]:
    client = redis.Redis.from_url(server.url)
    try:
        return list(client.execute_command("ACL", "LOG"))
    finally:
        client.close()


def _warnings(err: str) -> list[dict[str, str]]:
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("level") == "warning"]


@pytest.mark.asvs("V2.4.1", "V7.4.1", "V16.5.2")
@pytest.mark.parametrize("redis_server", [
    ["--maxmemory-policy", "allkeys-lru"], ["--maxmemory-policy", "volatile-ttl"],
], indirect=True, ids=["allkeys-lru", "volatile-ttl"])
def test_an_evicting_policy_refuses_start_up(
    monkeypatch: pytest.MonkeyPatch, redis_server: ThrowawayRedis
) -> None:
    policy = redis_server.args[-1]
    with pytest.raises(ConfigError) as info:
        _production(monkeypatch, BASTION_REDIS_URL=redis_server.url)
    assert info.value.problems == [
        f"Redis maxmemory-policy is {policy}: under memory pressure Redis would silently "
        "delete rate-limit counters, token revocations and spent 2FA markers; set "
        "maxmemory-policy noeviction on the Redis server of BASTION_REDIS_URL"
    ]


@pytest.mark.asvs("V16.5.2")
def test_noeviction_starts(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    app = _production(monkeypatch, BASTION_REDIS_URL=SHARED)
    assert app.config["REDIS_URL"] == SHARED
    assert _warnings(capsys.readouterr().err) == []


@pytest.mark.asvs("V16.5.2")
@INFO_REFUSED
def test_a_policy_that_cannot_be_read_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    redis_server: ThrowawayRedis,
) -> None:
    """As the compose ACL does: ``INFO`` refused. The policy cannot be known, so the app
    starts and says so (compose sets ``noeviction`` on the server's command line)."""
    _production(monkeypatch, BASTION_REDIS_URL=redis_server.url)
    [warning] = _warnings(capsys.readouterr().err)
    assert warning["msg"] == "redis maxmemory-policy not checked"
    assert warning["error"] == "NoPermissionError"


@pytest.mark.asvs("V16.5.2")
def test_redis_down_at_start_up_is_a_warning_not_a_refusal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    _production(monkeypatch, BASTION_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert time.monotonic() - started < 10
    [warning] = _warnings(capsys.readouterr().err)
    assert warning["msg"] == "redis maxmemory-policy not checked"
    assert warning["error"] == "ConnectionError"


@pytest.mark.parametrize("redis_server", [["--maxmemory-policy", "allkeys-lru"]],
                         indirect=True, ids=["allkeys-lru"])
def test_only_production_asks(make_app, redis_server: ThrowawayRedis) -> None:  # type: ignore[no-untyped-def]
    """Development and tests may use any Redis (their data is throwaway)."""
    assert make_app(REDIS_URL=redis_server.url).config["REDIS_URL"] == redis_server.url


@INFO_REFUSED
def test_switched_off_it_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    redis_server: ThrowawayRedis,
) -> None:
    """As compose runs it: no INFO, so no refusal in Redis' ACL LOG (where an operator
    looks for probing) and no warning; the switch is the deployment's word for its Redis."""
    _production(monkeypatch, BASTION_REDIS_URL=redis_server.url,
                BASTION_REDIS_POLICY_CHECK="off")
    assert _warnings(capsys.readouterr().err) == []
    assert _acl_log(redis_server) == []
    monkeypatch.delenv("BASTION_REDIS_POLICY_CHECK")
    _production(monkeypatch, BASTION_REDIS_URL=redis_server.url)
    assert len(_acl_log(redis_server)) == 1


def test_compose_switches_it_off_for_its_own_redis() -> None:
    """compose's Redis is started with noeviction and its ACL refuses INFO; the switch is
    off there and nowhere else."""
    root = Path(__file__).resolve().parents[2]
    compose = (root / "deploy/compose.yaml").read_text()
    assert 'BASTION_REDIS_POLICY_CHECK: "off"' in compose
    assert "--maxmemory-policy noeviction" in compose
    acl = (root / "deploy/redis/users.acl").read_text()
    assert "+info" not in acl
    k8s = "".join(p.read_text() for p in (root / "deploy/k8s").rglob("*.yaml"))
    assert "REDIS_POLICY_CHECK" not in k8s
