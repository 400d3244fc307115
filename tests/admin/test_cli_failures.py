"""The operator's commands under attack and races: ``db ...`` run for real against a
database it cannot use or asked for what the migrations cannot do, and ``sessions revoke``
while an admin deletes accounts on the site."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from sqlalchemy import select

from bastion.admin.services import sign_out_everywhere
from bastion.auth import cli as auth_cli
from bastion.extensions import db
from bastion.models import AuditEvent, User
from tests.check.test_bastion_production import production_env
from tests.factories import UserFactory
from tests.ops.processes import REDIS_SERVER, ThrowawayRedis
from tests.support.races import delete_user_elsewhere
from tests.support.services import refused_port

ROOT = Path(__file__).resolve().parents[2]
FLASK = str(Path(sys.executable).parent / "flask")


def _flask(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLASK, "--app", "bastion", *args], env={**os.environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.mark.asvs("V16.5.1", "V16.5.2")
@pytest.mark.parametrize(
    "args",
    [["db", "upgrade"], ["db", "downgrade"], ["db", "current"], ["db", "stamp", "head"],
     ["db", "check"]],
    ids=" ".join,
)
def test_a_migration_against_an_unreachable_database_is_one_line_not_a_traceback(
    tmp_path: Path, args: list[str]
) -> None:
    # Every other command turned a refused connection into a one-line message; the
    # migration job (the first thing a deployment with the wrong URL runs) printed
    # SQLAlchemy's traceback instead.
    env = {
        **production_env(f"postgresql+psycopg://bastion@127.0.0.1:{refused_port()}/bastion"),
        "BASTION_UPLOAD_DIR": str(tmp_path / "uploads"),
    }

    proc = _flask(args, env)

    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    assert "Error: cannot use the database: OperationalError:" in output
    assert "Check BASTION_DATABASE_URL" in output


@pytest.mark.asvs("V16.5.1", "V1.3.1")
@pytest.mark.parametrize(
    "args", [["db", "upgrade", "--sql"], ["db", "downgrade", "--sql", "head:base"]], ids=" ".join
)
def test_offline_sql_is_refused_with_a_reason_not_a_half_written_script(
    tmp_path: Path, args: list[str]
) -> None:
    # `db upgrade --sql` wrote DDL until the first data step (articles rendered again by the
    # current sanitiser), then crashed with a traceback: a script that left the stored HTML
    # unsanitised, had it not crashed.
    env = {
        "BASTION_ENV": "development",
        "BASTION_DATABASE_URL": f"sqlite:///{tmp_path / 'bastion.db'}",
        "BASTION_UPLOAD_DIR": str(tmp_path / "uploads"),
    }

    proc = _flask(args, env)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "cannot be written out as SQL" in proc.stderr
    assert "CREATE TABLE" not in proc.stdout


def test_the_migration_commands_still_migrate(tmp_path: Path) -> None:
    """The wrapped group keeps Flask-Migrate's options and commands."""
    env = {
        "BASTION_ENV": "development",
        "BASTION_DATABASE_URL": f"sqlite:///{tmp_path / 'bastion.db'}",
        "BASTION_UPLOAD_DIR": str(tmp_path / "uploads"),
    }
    upgraded = _flask(["db", "upgrade"], env)
    assert upgraded.returncode == 0, upgraded.stderr
    current = _flask(["db", "-x", "unused=1", "current"], env)
    assert current.returncode == 0, current.stderr
    assert "(head)" in current.stdout
    missing = _flask(["db", "upgrade", "no-such-revision"], env)
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    assert "Can't locate revision" in missing.stderr


@pytest.mark.asvs("V16.5.1")
def test_the_limiter_commands_answer_a_redis_that_hangs_in_one_line(
    tmp_path: Path, listening_port: int
) -> None:
    """``limiter clear`` is Flask-Limiter's own command: a Redis that took the connection
    and never answered ended it in redis-py's traceback; the timeout is a line naming the
    setting to check. (A refused connection: tests/test_cli_exit_codes.py.)"""
    env = {
        "BASTION_ENV": "development",
        "BASTION_DATABASE_URL": f"sqlite:///{tmp_path / 'bastion.db'}",
        "BASTION_UPLOAD_DIR": str(tmp_path / "uploads"),
        "BASTION_REDIS_URL": f"redis://127.0.0.1:{listening_port}/0",
    }

    proc = _flask(["limiter", "clear", "--key", "192.0.2.1", "-y"], env)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"Error: cannot reach the rate limiter's store: TimeoutError: Timeout reading from "
        f"127.0.0.1:{listening_port}. Check BASTION_REDIS_URL and that Redis is reachable.")


def test_the_limiter_commands_still_clear_a_reachable_store(
    tmp_path: Path, redis_url: str
) -> None:
    """The guard on Flask-Limiter's group changes nothing while Redis answers."""
    env = {
        "BASTION_ENV": "development",
        "BASTION_DATABASE_URL": f"sqlite:///{tmp_path / 'bastion.db'}",
        "BASTION_UPLOAD_DIR": str(tmp_path / "uploads"),
        "BASTION_REDIS_URL": redis_url,
    }

    proc = _flask(["limiter", "clear", "--key", "192.0.2.1", "-y"], env)

    assert proc.returncode == 0, proc.stderr
    assert "Cleared" in proc.stdout


ACL_PASSWORD = secrets.token_hex(16)
# A Redis user for the app without DEL, which `limiter clear` sends: an ACL that lags
# behind the commands the app uses (deploy/redis/users.acl lists each one).
STORE_ACL = ("--user", "default", "off", "resetpass", "-@all",
             "--user", "bastion", "on", f">{ACL_PASSWORD}", "~LIMITS:*", "~bastion:*",
             "-@all", "+ping", "+get", "+set", "+evalsha", "+script|load")


@pytest.fixture
def acl_redis() -> Iterator[ThrowawayRedis]:
    """A redis-server of its own whose ACL refuses anonymous connections and DEL."""
    if not REDIS_SERVER.exists():
        pytest.skip("redis-server is not installed")
    server = ThrowawayRedis(args=STORE_ACL).start()
    yield server
    server.stop()


def _limiter_clear(tmp_path: Path, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {
        "BASTION_ENV": "development",
        "BASTION_DATABASE_URL": f"sqlite:///{tmp_path / 'bastion.db'}",
        "BASTION_UPLOAD_DIR": str(tmp_path / "uploads"),
        "BASTION_REDIS_URL": redis_url,
    }
    return _flask(["limiter", "clear", "--key", "192.0.2.1", "-y"], env)


@pytest.mark.asvs("V16.5.1")
def test_the_limiter_commands_answer_a_command_the_redis_acl_refuses_in_one_line(
    tmp_path: Path, acl_redis: ThrowawayRedis
) -> None:
    """Redis refusing ``limiter clear``'s DEL by its ACL (NoPermissionError) ended the
    command in redis-py's traceback: a misconfigured store, named as such, not a bug."""
    proc = _limiter_clear(
        tmp_path, f"redis://bastion:{ACL_PASSWORD}@127.0.0.1:{acl_redis.port}/0"
    )

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert ACL_PASSWORD not in proc.stdout + proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "Error: the rate limiter's store refused the app's command: NoPermissionError: this "
        "user has no permissions to run the 'del' command. Check that the Redis ACL of "
        "BASTION_REDIS_URL's user allows the command and its keys (deploy/redis/users.acl).")


@pytest.mark.asvs("V16.5.1")
@pytest.mark.parametrize(
    ("credentials", "refusal"),
    [(f"bastion:wrong-{ACL_PASSWORD}@", "invalid username-password pair or user is disabled"),
     ("", "Authentication required")],
    ids=["wrong password", "none"],
)
def test_the_limiter_commands_answer_refused_credentials_in_one_line(
    tmp_path: Path, acl_redis: ThrowawayRedis, credentials: str, refusal: str
) -> None:
    """Credentials Redis refuses are not a store out of reach: the line says which, and
    points at the password in the URL rather than at the network."""
    proc = _limiter_clear(tmp_path, f"redis://{credentials}127.0.0.1:{acl_redis.port}/0")

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert ACL_PASSWORD not in proc.stdout + proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"Error: the rate limiter's store refused the app's credentials: AuthenticationError: "
        f"{refusal}. Check the user name and password in BASTION_REDIS_URL against the Redis "
        f"users (its ACL).")


@pytest.fixture
def auth_refusing_port() -> Iterator[int]:
    """A server that answers every command as a Redis before 6 (or a proxy in front of
    one) answers an AUTH it cannot parse. Redis 6 and later never do, and redis-py retries
    a two-argument AUTH with one, so no local redis-server gives this answer to both."""
    refusal = b"-ERR wrong number of arguments for 'auth' command\r\n"
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        done = threading.Event()

        def serve() -> None:
            while not done.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.settimeout(5)
                    with suppress(OSError):
                        while data := conn.recv(65536):
                            conn.sendall(refusal * data.count(b"*"))

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield server.getsockname()[1]
        done.set()
        thread.join(timeout=5)


@pytest.mark.asvs("V16.5.1")
def test_the_limiter_commands_answer_an_auth_the_store_cannot_parse_in_one_line(
    tmp_path: Path, auth_refusing_port: int
) -> None:
    """A user name in the URL for a server that takes only a password
    (AuthenticationWrongNumberOfArgsError) ended the command in a traceback."""
    proc = _limiter_clear(tmp_path, f"redis://bastion:pw@127.0.0.1:{auth_refusing_port}/0")

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "Error: the rate limiter's store refused the app's credentials: "
        "AuthenticationWrongNumberOfArgsError: wrong number of arguments for 'auth' command. "
        "Check the user name and password in BASTION_REDIS_URL against the Redis users "
        "(its ACL).")


@pytest.fixture
def read_only_redis() -> Iterator[ThrowawayRedis]:
    """A read-only replica of its own, of a primary it never reaches."""
    if not REDIS_SERVER.exists():
        pytest.skip("redis-server is not installed")
    server = ThrowawayRedis(
        args=("--replicaof", "127.0.0.1", str(refused_port()), "--replica-read-only", "yes")
    ).start()
    yield server
    server.stop()


@pytest.fixture
def misconf_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    """A redis-server of its own that refuses writes with MISCONF: it has a save point,
    stop-writes-on-bgsave-error (the default), and a snapshot that failed (its file's name
    is taken by a directory, which no rename replaces, even as root)."""
    if not REDIS_SERVER.exists():
        pytest.skip("redis-server is not installed")
    data = tmp_path / "redis"
    data.mkdir()
    server = ThrowawayRedis(args=("--dir", str(data), "--dbfilename", "dump.rdb")).start()
    try:
        (data / "dump.rdb" / "taken").mkdir(parents=True)
        client = redis.Redis.from_url(server.url)
        client.config_set("save", "3600 1")
        client.bgsave()
        deadline = time.monotonic() + 10
        while client.info("persistence")["rdb_last_bgsave_status"] != "err":
            assert time.monotonic() < deadline, "the snapshot did not fail"
            time.sleep(0.05)
        client.close()
        yield server
    finally:
        server.stop()  # SIGKILL: on SIGTERM it would refuse to stop without its snapshot


@pytest.mark.asvs("V16.5.1")
@pytest.mark.parametrize(
    ("store", "refusal"),
    [("read_only_redis",
      "ReadOnlyError: You can't write against a read only replica. Check that "
      "BASTION_REDIS_URL names the primary Redis, not a read-only replica."),
     ("misconf_redis",
      "ResponseError: MISCONF Redis is configured to save RDB snapshots, but it's currently "
      "unable to persist to disk. Check the disk and the log of the Redis server of "
      "BASTION_REDIS_URL: it refuses writes while it cannot save its snapshots "
      "(stop-writes-on-bgsave-error).")],
    ids=["read-only replica", "MISCONF"],
)
def test_the_limiter_commands_answer_a_redis_that_refuses_writes_in_one_line(
    tmp_path: Path, request: pytest.FixtureRequest, store: str, refusal: str
) -> None:
    """A Redis that refuses ``limiter clear``'s DEL as a read-only replica or while it
    cannot save its snapshots ended the command in redis-py's traceback."""
    server: ThrowawayRedis = request.getfixturevalue(store)

    proc = _limiter_clear(tmp_path, server.url)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"Error: the rate limiter's store refused writes: {refusal}")



@pytest.mark.asvs("V7.4.2", "V16.5.1")
def test_revoking_everyone_passes_over_an_account_deleted_meanwhile(
    app: Flask, runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An account deleted on the site while `sessions revoke --all` ran stopped the run
    # (a database error, "has `db upgrade` run?"), leaving every later account signed in.
    gone, *others = (UserFactory(username=name) for name in ("aaron", "beth", "carl"))
    gone_id, other_ids = gone.id, [u.id for u in others]
    real = sign_out_everywhere

    def deleted_first(actor: User | None, user: User) -> int:
        if user.id == gone_id:
            delete_user_elsewhere(app, gone_id)
        return real(actor, user)

    monkeypatch.setattr(auth_cli, "sign_out_everywhere", deleted_first)
    result = runner.invoke(args=["sessions", "revoke", "--all"])

    assert result.exit_code == 0, result.output
    assert "Ended 0 session(s) of all users." in result.output
    signed_out = db.session.scalars(
        select(AuditEvent.target_user_id).where(AuditEvent.event == "user.signed_out_everywhere")
    )
    assert sorted(i or 0 for i in signed_out) == sorted(other_ids)


def test_revoking_one_account_deleted_meanwhile_says_so(
    app: Flask, runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone_id = UserFactory(username="aaron").id
    real = sign_out_everywhere

    def deleted_first(actor: User | None, user: User) -> int:
        delete_user_elsewhere(app, gone_id)
        return real(actor, user)

    monkeypatch.setattr(auth_cli, "sign_out_everywhere", deleted_first)
    result = runner.invoke(args=["sessions", "revoke", "aaron"])

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "No account named 'aaron': deleted meanwhile." in result.output


@pytest.mark.asvs("V16.5.1")
@pytest.mark.parametrize("args", [["users", "list"], ["db", "upgrade"]], ids=" ".join)
def test_a_refused_configuration_is_the_commands_one_error_not_a_traceback(
    tmp_path: Path, args: list[str]
) -> None:
    """Start-up's list of problems is what an operator running a command must read first;
    it came wrapped in forty lines of Flask's app loading."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(BASTION_ENV="production", BASTION_UPLOAD_DIR=str(tmp_path / "uploads"))
    proc = subprocess.run([FLASK, "--app", "bastion", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)

    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: Bastion refuses to start; fix these settings:\n")
    assert "  - BASTION_SECRET_KEY is missing" in proc.stderr


@pytest.mark.asvs("V16.5.1")
def test_help_under_a_refused_configuration_names_the_problem_and_lists_the_commands(
    tmp_path: Path,
) -> None:
    """``flask --help`` is what an operator runs first; Flask printed the refusal as its
    traceback of loading the app, above the commands that still work."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(BASTION_ENV="production", BASTION_UPLOAD_DIR=str(tmp_path / "uploads"))
    proc = subprocess.run([FLASK, "--app", "bastion", "--help"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: Bastion refuses to start; fix these settings:\n")
    assert "  - BASTION_SECRET_KEY is missing" in proc.stderr
    assert "Commands:" in proc.stdout
    assert "  routes " in proc.stdout


def test_a_store_message_that_ends_in_a_question_keeps_its_own_mark() -> None:
    from redis.exceptions import AuthenticationError

    from bastion.cli import store_problem

    refused = AuthenticationError("AUTH <password> called without any password configured "
                                  "for the default user. Are you sure your configuration is "
                                  "correct?")
    text = store_problem(refused).format_message()
    assert "correct? Check" in text and "?." not in text
    assert store_problem(ConnectionError("Connection refused.")).format_message().count("..") == 0


def test_another_redis_error_in_the_limiter_commands_keeps_its_traceback() -> None:
    """Only refusals a configuration explains become one line; any other error is a bug."""
    from redis.exceptions import ResponseError

    from bastion.cli import _store_failures_as_messages

    with pytest.raises(ResponseError, match="WRONGTYPE"), _store_failures_as_messages():
        raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
