"""The compose Redis gives the app a least-privilege account, not the all-powerful default.

``deploy/compose.yaml`` starts Redis with the users of ``deploy/redis/users.acl``: ``default``
off, the app as ``bastion`` with an allowlist of commands on its own keys. These tests run
that very start-up command (its paths moved into a temporary directory) with the local
redis-server, so the file, the compose command and the tests cannot drift apart. A Bastion
app then signs in as ``bastion`` and goes down every path that uses Redis; every command it
sends must be one the ACL names, and Redis must have refused none (its ACL LOG). Then the
same credentials try what an attacker holding them (or reaching Redis through the app)
would. A test-only ``inspector`` user, added on the command line, watches from outside.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from flask import Flask
from limits.storage import RedisStorage
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from redis.retry import Retry

from bastion.api import user_states
from bastion.config import BaseConfig
from bastion.extensions import db, limiter
from bastion.models import User, utcnow
from tests.api.conftest import Api
from tests.factories import UserFactory
from tests.ops.processes import REDIS_SERVER, free_port, stop
from tests.support.account_fixtures import enable_2fa, sign_in
from tests.support.accounts import post_form, unused_code

pytestmark = [pytest.mark.redis]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ACL = DEPLOY / "redis" / "users.acl"
APP_USER = "bastion"
INSPECTOR = "inspector"
# Always allowed by Redis, to anyone: they are how a connection signs in.
SIGN_IN_COMMANDS = {"auth", "hello"}
REDIS_CALL = re.compile(r"""redis\.call\(\s*['"](\w+)['"]""")


def acl_users() -> dict[str, list[str]]:
    """The rules of each user in the ACL file, as the compose command copies them."""
    return {
        line.split()[1]: line.split()[2:]
        for line in ACL.read_text().splitlines()
        if line.startswith("user ")
    }


def allowed_commands() -> set[str]:
    """``cmd`` or ``cmd|subcommand`` for every ``+`` rule of the app's user."""
    return {rule[1:] for rule in acl_users()[APP_USER] if rule.startswith("+")}


@dataclass
class ComposeRedis:
    port: int
    password: str
    inspector_password: str
    secrets_dir: Path
    proc: subprocess.Popen[bytes]

    @property
    def app_url(self) -> str:
        """What deploy/make-secrets.sh writes to redis_url, with this server's address."""
        return f"redis://{APP_USER}:{self.password}@127.0.0.1:{self.port}/0"

    def inspector(self) -> redis.Redis:
        return redis.Redis(port=self.port, username=INSPECTOR, password=self.inspector_password)

    def denials(self) -> list[dict[str, Any]]:
        """ACL LOG entries (refused commands, keys, sign-ins) of the app's user."""
        log: list[dict[str, Any]] = self.inspector().acl_log(count=128)  # type: ignore[assignment]
        return [entry for entry in log if entry.get("username") == APP_USER]


def _moved(text: str, tmp: Path, service: dict[str, Any]) -> str:
    """A compose command string with its container paths moved under ``tmp`` (and
    compose's ``$$`` escape undone)."""
    text = text.replace("/tmp/", f"{tmp}/").replace("$$", "$")
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        text = text.replace(target, str((DEPLOY / source).resolve()))
    for name in service["secrets"]:
        text = text.replace(f"/run/secrets/{name}", str(tmp / "secrets" / name))
    return text


@pytest.fixture
def compose_redis(tmp_path: Path) -> Iterator[ComposeRedis]:
    """redis-server started by the compose service's own command."""
    if not REDIS_SERVER.exists():
        pytest.skip("redis-server is not installed")
    service = yaml.safe_load(COMPOSE.read_text())["services"]["redis"]
    shell, flag, script = service["command"]
    (tmp_path / "secrets").mkdir()
    password = secrets.token_hex(32)  # as make-secrets.sh makes it
    (tmp_path / "secrets" / "redis_password").write_text(password)
    port, inspector_password = free_port(), secrets.token_hex(16)
    extra = ["--port", str(port), "--bind", "127.0.0.1",
             "--user", INSPECTOR, "on", f">{inspector_password}", "~*", "&*", "+@all"]
    env = {**os.environ, "PATH": f"{REDIS_SERVER.parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [shell, flag, f"{_moved(script, tmp_path, service)} {shlex.join(extra)}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    server = ComposeRedis(port, password, inspector_password, tmp_path / "secrets", proc)
    deadline = time.monotonic() + 10
    while True:
        try:
            server.inspector().ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                raise AssertionError("the compose redis command did not start") from None
            time.sleep(0.05)
    yield server
    stop(proc)


@pytest.fixture
def sent_by_app(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, str]]]:
    """(command, first argument) of everything sent to Redis as the app's user, one list
    per write to the socket (a pipeline is one)."""
    sent: list[list[tuple[str, str]]] = []
    original = AbstractConnection.send_packed_command

    def send(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        if getattr(self, "username", None) == APP_USER:
            chunks = [command] if isinstance(command, bytes | memoryview) else command
            sent.append(list(_unpack(b"".join(bytes(chunk) for chunk in chunks))))
        original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", send)
    return sent


def _unpack(data: bytes) -> Iterator[tuple[str, str]]:
    """The commands in RESP-packed bytes: arrays of bulk strings, one per command."""
    pos = 0
    while pos < len(data):
        end = data.index(b"\r\n", pos)
        count, pos = int(data[pos + 1:end]), end + 2
        args = []
        for _ in range(count):
            end = data.index(b"\r\n", pos)
            size, pos = int(data[pos + 1:end]), end + 2
            args.append(data[pos:pos + size].decode("latin-1").lower())
            pos += size + 2
        yield args[0], (args[1] if len(args) > 1 else "")


@pytest.mark.asvs("V13.2.2")
def test_the_acl_is_an_allowlist_on_the_apps_own_keys(compose_redis: ComposeRedis) -> None:
    """Exact commands after ``-@all`` (no category, no key or channel wildcard), none of
    them in Redis' own ``@dangerous`` list, on the prefixes Bastion's settings use; and
    ``default`` can neither sign in nor run anything."""
    users = acl_users()
    assert set(users) == {"default", APP_USER}
    default = users["default"]
    assert "off" in default and "resetpass" in default and "-@all" in default
    assert not [r for r in default if r.startswith((">", "#", "+", "~", "%", "&")) or r == "nopass"]

    rules = users[APP_USER]
    assert rules.index("-@all") < min(rules.index(r) for r in rules if r.startswith("+"))
    assert not [r for r in rules if r.startswith(("+@", ">", "#", "&", "%")) or r in {
        "allcommands", "allkeys", "allchannels", "nopass", "~*"}]
    keys = {r for r in rules if r.startswith("~")}
    assert keys == {f"~{BaseConfig.REDIS_PREFIX}:*", f"~{BaseConfig.RATELIMIT_KEY_PREFIX}:*",
                    f"~{RedisStorage.PREFIX}:*"}
    assert "resetchannels" in rules, "no Pub/Sub channel"
    dangerous = {str(c) for c in compose_redis.inspector().acl_cat("dangerous")}
    assert not {c.split("|")[0] for c in allowed_commands()} & dangerous
    assert not allowed_commands() & dangerous


@pytest.mark.asvs("V13.2.1", "V13.2.2")
def test_every_redis_path_of_the_app_works_as_its_acl_user(
    compose_redis: ComposeRedis,
    make_app: Callable[..., Flask],
    sent_by_app: list[list[tuple[str, str]]],
) -> None:
    """Readiness, the sign-in throttle, the 2FA marker, API tokens (revocation read along
    with the limiter's hit, user-state stamps, revocation), the mail budget and route limits
    up to a 429 with its headers: all through Redis as ``bastion``, none refused."""
    inspector = compose_redis.inspector()
    app = make_app(REDIS_URL=compose_redis.app_url)
    with app.app_context():
        client = app.test_client()
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json["checks"]["redis"] == "ok"

        # Sign-in throttle (Lua: HGET, HSET, EXPIRE; a right password: HINCRBY) and the
        # 2FA marker spent once the code is right (EXISTS, SET NX EX).
        user = UserFactory(username="tess", email="tess@example.org")
        secret = enable_2fa(user)
        user.totp_last_step = None
        db.session.commit()
        sign_in(client, "tess", "not the password")
        assert inspector.keys(f"{BaseConfig.RATELIMIT_KEY_PREFIX}:throttle:*")
        assert sign_in(client, "tess").status_code == 302
        done = post_form(client, "/auth/2fa", {"code": unused_code(secret, None)})
        account = client.get("/account")
        assert (done.status_code, account.status_code) == (302, 200), (
            done.headers.get("Location"), account.headers.get("Location"))
        assert len(inspector.keys(f"{BaseConfig.RATELIMIT_KEY_PREFIX}:2fa-pending:*")) == 1

        # API: the first call settles the user's stamps (SET NX EX, MGET); the second
        # sends the revocation read in the limiter's pipeline (EVALSHA + MGET); revoking
        # sets a key that the next call sees.
        reader = UserFactory()
        api = Api(app.test_client())
        access = api.access_for(reader)
        assert api.call("GET", "/articles", access).status_code == 200
        assert api.call("GET", "/articles", access).status_code == 200
        # A reader that found no stamp, when another created it first: SET NX fails, GET.
        user_states._settle(reader.id, (None, None))
        assert api.call("POST", "/auth/revoke", json={"token": access}).status_code == 204
        assert inspector.keys(f"{BaseConfig.REDIS_PREFIX}:revoked:*")
        assert api.call("GET", "/articles", access).status_code == 401
        # A change to the user replaces their stamp after the commit (a pipeline of SETs).
        stamp_key = f"{BaseConfig.REDIS_PREFIX}:user-state:{reader.id}"
        stamp = inspector.get(stamp_key)
        db.session.get(User, reader.id).disabled_at = utcnow()  # type: ignore[union-attr]
        db.session.commit()
        assert inspector.get(stamp_key) not in (None, stamp)

        # Redis lost its scripts (a restart): EVALSHA fails, the script is loaded again.
        inspector.script_flush()
        # The mail budget (3 per 15 minutes for one mailbox and client), then the route's
        # own limit (5 per minute): its 429 reads the window back for its headers.
        anonymous = app.test_client()
        answers = [
            post_form(anonymous, "/auth/reset", {"email": "tess@example.org"}).status_code
            for _ in range(6)
        ]
        assert answers == [302] * 5 + [429]
        budget = inspector.keys(f"{RedisStorage.PREFIX}:*mail-to*")
        assert len(budget) == 2 and max(inspector.llen(k) for k in budget) == 3
        assert limiter.limiter.storage is limiter.storage, "counted in Redis, no fallback"
        db.session.remove()

    assert compose_redis.denials() == []
    assert any({"evalsha", "mget"} <= {name for name, _ in batch} for batch in sent_by_app), (
        "the revocation read went along with the limiter's hit"
    )
    commands = [command for batch in sent_by_app for command in batch]
    allowed = allowed_commands()
    outside = {
        (name, arg) for name, arg in commands
        if name not in SIGN_IN_COMMANDS and name not in allowed and f"{name}|{arg}" not in allowed
    }
    assert outside == set(), "every command the app sends is on the allowlist"
    # And nothing more: each rule is a command sent above or one its scripts call.
    sent = {name for name, _ in commands} | {f"{n}|{a}" for n, a in commands}
    assert allowed == (allowed & sent) | script_commands()


def script_commands() -> set[str]:
    """What the Lua scripts the app runs call: limits' moving window, the sign-in throttle."""
    from bastion.auth import throttle

    sources = (RedisStorage.SCRIPT_ACQUIRE_MOVING_WINDOW, RedisStorage.SCRIPT_MOVING_WINDOW,
               throttle._RESERVE, throttle._REFUND)
    texts = [s.decode() if isinstance(s, bytes) else s for s in sources]
    return {name.lower() for text in texts for name in REDIS_CALL.findall(text)}


@pytest.mark.asvs("V13.2.2", "V13.2.1")
def test_the_apps_credentials_reach_no_further_than_the_app(compose_redis: ComposeRedis) -> None:
    """An attacker with the app's Redis URL (or an SSRF through it) can neither wipe nor
    reconfigure Redis, read other keys, load code or look around; a connection that has
    not signed in as ``bastion`` can do nothing."""
    inspector = compose_redis.inspector()
    inspector.set("other:secret", "kept")
    app = redis.Redis.from_url(compose_redis.app_url, driver_info=None)
    assert app.ping()
    refused = [
        ("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("CONFIG", "SET", "dir", "/tmp"),
        ("KEYS", "*"), ("SCAN", "0"), ("DEBUG", "SLEEP", "0"), ("MODULE", "LOAD", "/tmp/x.so"),
        ("SHUTDOWN", "NOSAVE"), ("EVAL", "return 1", "0"), ("SCRIPT", "FLUSH"),
        ("SCRIPT", "KILL"), ("CLIENT", "LIST"), ("CLIENT", "KILL", "TYPE", "normal"),
        ("ACL", "LIST"), ("ACL", "SETUSER", "bastion", "+@all"), ("INFO",), ("SELECT", "1"),
        ("SAVE",), ("BGSAVE",), ("REPLICAOF", "127.0.0.1", "1"), ("PUBLISH", "news", "x"),
        ("MIGRATE", "127.0.0.1", "1", "bastion:x", "0", "1"), ("SWAPDB", "0", "1"),
        ("OBJECT", "ENCODING", "bastion:x"), ("DUMP", "bastion:x"), ("RENAME", "bastion:x", "y"),
    ]
    for command in refused:
        # What the ACL itself says (DEBUG and MODULE are also off by Redis' own defaults),
        # then what the server does.
        verdict = inspector.execute_command("ACL", "DRYRUN", APP_USER, *command)
        assert b"no permissions" in verdict, command
        with pytest.raises(ResponseError):
            app.execute_command(*command)
    # Keys outside its prefixes, directly or inside a script it loaded itself.
    for command in (("GET", "other:secret"), ("SET", "other:secret", "x"),
                    ("DEL", "other:secret"), ("MGET", "bastion:x", "other:secret")):
        with pytest.raises(NoPermissionError):
            app.execute_command(*command)
    for body in ("return redis.call('get', 'other:secret')", "return redis.call('flushall')",
                 "return redis.call('keys', '*')"):
        sha = app.script_load(body)
        with pytest.raises(ResponseError, match="(?i)can't (access|run)"):
            app.evalsha(sha, 0)
    assert inspector.get("other:secret") == b"kept"
    assert app.set("bastion:own", "1") and app.get("LIMITS:own") is None

    # Not signed in: nothing; `default` cannot sign in, even with the app's password.
    # (redis-py retries a refused sign-in as a connection error, with back-off: once only.)
    once = {"driver_info": None, "retry": Retry(NoBackoff(), 0)}
    anonymous = redis.Redis(port=compose_redis.port, **once)
    with pytest.raises(AuthenticationError):
        anonymous.ping()
    as_default = redis.Redis(port=compose_redis.port, username="default",
                             password=compose_redis.password, **once)
    with pytest.raises(AuthenticationError):
        as_default.ping()
    old_url = f"redis://:{compose_redis.password}@127.0.0.1:{compose_redis.port}/0"
    with pytest.raises(AuthenticationError):
        redis.Redis.from_url(old_url, **once).ping()


def test_the_health_check_signs_in_as_the_app(compose_redis: ComposeRedis) -> None:
    """The compose health check passes with the secret, and fails without the right one."""
    if not shutil.which("redis-cli"):
        pytest.skip("redis-cli is not installed")
    service = yaml.safe_load(COMPOSE.read_text())["services"]["redis"]
    kind, check = service["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    tmp = compose_redis.secrets_dir.parent
    command = _moved(check, tmp, service).replace(
        "redis-cli ", f"redis-cli -h 127.0.0.1 -p {compose_redis.port} "
    )

    def healthy() -> bool:
        return subprocess.run(["sh", "-c", command], timeout=10, check=False).returncode == 0

    assert healthy()
    (compose_redis.secrets_dir / "redis_password").write_text("wrong")
    assert not healthy()
