"""Every command gives the exit statuses docs/commands.md documents.

Operators script these commands (cron, Kubernetes Jobs, deploy pipelines): the status is
the contract. Each documented status of each command is produced here through the real
command line (Flask's own ``flask`` group, so Flask's and the extensions' commands too),
and a command missing from the table fails the table test.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import click
import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.cli import ScriptInfo
from flask.cli import cli as flask_cli
from sqlalchemy import Connection, Row, update

from bastion.extensions import db
from bastion.models import Article, RetiredUsername, utcnow
from bastion.security import audit
from bastion.uploads import storage
from tests.conftest import base_config
from tests.factories import ArticleFactory, UserFactory
from tests.support.account_fixtures import enable_2fa
from tests.support.services import refused_port

DOC = Path(__file__).resolve().parents[1] / "docs" / "commands.md"
FLASK = str(Path(sys.executable).parent / "flask")
PASSPHRASE = "tangerine-orbit-lattice-93"
ORPHAN = "ab" + "0" * 30 + ".png"  # a storage name under ab/
NEW_KEY = "n3w-" + "Qm7Rt5Yp1Vb8Nc4Hd6Jf0Gs3AeZx9Qw2L" * 2

# "| `users list` | ... | ... |": the command, then one cell per status of the header.
TABLE_ROW = re.compile(r"^\| `([^`]+)`[^|]*((?:\|[^|\n]*)+)\|$", re.M)
HEADER = re.compile(r"^\| Command((?: \| \d+)+) \|$", re.M)


def documented() -> dict[str, set[int]]:
    """Each command of the table with the statuses whose cell is not a dash."""
    text = DOC.read_text(encoding="utf-8").split("## Each command", 1)[1]
    header = HEADER.search(text)
    assert header, "no status header in docs/commands.md"
    statuses = [int(s) for s in re.findall(r"\d+", header.group(1))]
    table: dict[str, set[int]] = {}
    for name, cells in TABLE_ROW.findall(text):
        values = [c.strip() for c in cells.strip("|").split("|")]
        assert len(values) == len(statuses), name
        table[name] = {s for s, v in zip(statuses, values, strict=True) if v != "—"}
    return table


def registered(app: Flask) -> set[str]:
    """Every command ``flask --app bastion`` offers: a group documented as a whole by its
    name, any other group by each of its subcommands."""
    whole = set(documented())
    info = ScriptInfo(create_app=lambda: app)
    names: set[str] = set()
    with flask_cli.make_context("flask", [], obj=info, resilient_parsing=True) as ctx:
        for name in flask_cli.list_commands(ctx):
            command = flask_cli.get_command(ctx, name)
            if isinstance(command, click.Group) and name not in whole:
                names |= {f"{name} {sub}" for sub in command.list_commands(ctx)}
            else:
                names.add(name)
    return names


# ------------------------------------------------------------------------- cases ---
Prepare = Callable[[Flask, pytest.MonkeyPatch, Path], None]


@dataclass(frozen=True)
class Case:
    command: str  # its row in docs/commands.md
    status: int
    args: tuple[str, ...]
    says: str  # in the output: the status is for the documented reason
    prepare: Prepare | None = None
    input: str | None = None
    stdout: str | None = None  # "closed" or "full": run with standard output so
    # Run as `flask --app bastion` in a process of its own, the app created for the command
    # from the environment (development, SQLite): for what happens as the app is created.
    process: bool = False


def _admin(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    UserFactory(username="boss", role_name="admin")


def _viewer(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    UserFactory(username="ann")


def _current_article(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    ArticleFactory(title="Current")


def _disabled(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    UserFactory(username="ann", disabled_at=utcnow())


def _two_factor(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    UserFactory(username="ann", two_factor=True)


def _rotated(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    """NEW_KEY is the key, the old one a fallback: ann's recovery codes still need it."""
    enable_2fa(UserFactory(username="ann"))
    mp.setitem(app.config, "SECRET_KEY_FALLBACKS", [str(app.config["SECRET_KEY"])])
    mp.setitem(app.config, "SECRET_KEY", NEW_KEY)


def _lost_secret(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    user = UserFactory(username="ann")
    user.totp_secret = Fernet(Fernet.generate_key()).encrypt(b"JBSWY3DPEHPK3PXP").decode()
    db.session.commit()


def _deleted_without_retiring(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    """ann deleted as the previous release deletes: audited, the name not retired."""
    user = UserFactory(username="ann")
    db.session.delete(user)
    audit.record("user.deleted", target_user_id=user.id, details={"username": "ann"})


def _retired(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    db.session.add(RetiredUsername(username="ann"))
    db.session.commit()


def _viewer_retired(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    _viewer(app, mp, tmp)
    _retired(app, mp, tmp)


def _orphan_file() -> Path:
    """A file in the store that no row names."""
    fan_out = storage.root() / "ab"
    fan_out.mkdir(exist_ok=True)
    path = fan_out / ORPHAN
    path.write_bytes(b"not a row's file")
    return path


def _orphan(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    _orphan_file()


def _orphan_that_will_not_go(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    """An orphan replaced by a directory right before it is pruned (unlink refuses it)."""
    from bastion.uploads import cleanup, commands

    path = _orphan_file()
    real = cleanup.still_orphan

    def replaced(candidate: Path) -> bool:
        answer = real(candidate)
        path.unlink()
        path.mkdir()
        return answer

    mp.setattr(commands, "still_orphan", replaced)


def _store_is_a_file(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    not_a_dir = tmp / "uploads-file"
    not_a_dir.write_text("x", encoding="utf-8")
    mp.setitem(app.config, "UPLOAD_DIR", str(not_a_dir))


def _unsearchable(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    """An article written as the previous release writes one: no search words."""
    article = ArticleFactory(title="Stale")
    db.session.execute(update(Article).where(Article.id == article.id).values(search_words=""))
    db.session.commit()


def _edited_at_every_try(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    """An article without search words whose title changes between each read and each
    write of its words."""
    from bastion.content import stored_html

    _unsearchable(app, mp, tmp)
    real = stored_html.write_search_words

    def edited_first(bind: Connection, row: Row[int, str, str, str], fresh: str) -> bool:
        bind.execute(update(Article).where(Article.id == row.id)
                     .values(title=Article.title + "!"))
        return real(bind, row, fresh)

    mp.setattr(stored_html, "write_search_words", edited_first)


def _unsafe_cookie(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    mp.setitem(app.config, "SESSION_COOKIE_HTTPONLY", False)


def _redis_refused(app: Flask, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    mp.setenv("BASTION_REDIS_URL", f"redis://127.0.0.1:{refused_port()}/0")


CREATE = ("create-admin", "--username", "boss", "--email", "boss@example.org",
          "--password-stdin")

RELEASE = ("users", "release-username", "ann", "--reason", "Deleted by mistake, ticket 42")

CASES = [
    Case("create-admin", 0, CREATE, "Admin 'boss' created.", input=f"{PASSPHRASE}\n"),
    Case("create-admin", 1, CREATE, "Use at least 12 characters.", input="short\n"),
    Case("create-admin", 2, (*CREATE[:4], "not an address", CREATE[5]),
         "Enter a valid email address.", input=f"{PASSPHRASE}\n"),
    Case("setup-url", 0, ("setup-url",), "/setup/"),
    Case("setup-url", 1, ("setup-url",), "An admin already exists; no link issued.", _admin),
    Case("setup-url", 2, ("setup-url", "--base-url", "javascript:alert(1)"), "--base-url"),
    Case("users list", 0, ("users", "list"), "ann\t", _viewer),
    Case("users list", 1, ("users", "list"), "could not write the list: No space left",
         _viewer, stdout="full"),
    Case("users list", 2, ("users", "list", "--all"), "No such option"),
    Case("users disable", 0, ("users", "disable", "ann"), "ann is disabled", _viewer),
    Case("users disable", 0, ("users", "disable", "ann"), "nothing changed", _disabled),
    Case("users disable", 1, ("users", "disable", "nobody"), "No account named 'nobody'."),
    Case("users disable", 1, ("users", "disable", "boss"), "last active admin", _admin),
    Case("users disable", 2, ("users", "disable"), "Missing argument"),
    Case("users set-role", 0, ("users", "set-role", "ann", "editor"), "ann is now an editor.",
         _viewer),
    Case("users set-role", 1, ("users", "set-role", "boss", "viewer"), "last active admin",
         _admin),
    Case("users set-role", 2, ("users", "set-role", "ann", "boss"), "is not one of", _viewer),
    Case("users reset-2fa", 0, ("users", "reset-2fa", "ann", "--reason", "Video call, ID seen"),
         "Two-factor authentication of ann is reset", _two_factor),
    Case("users reset-2fa", 0, ("users", "reset-2fa", "ann", "--reason", "Video call, ID seen"),
         "ann has no two-factor authentication; nothing changed.", _viewer),
    Case("users reset-2fa", 1, ("users", "reset-2fa", "ann", "--reason", "ok"),
         "10 to 500 characters", _two_factor),
    Case("users reset-2fa", 2, ("users", "reset-2fa", "ann"), "--reason", _two_factor),
    Case("users purge-unconfirmed", 0, ("users", "purge-unconfirmed", "--dry-run"),
         "nothing deleted"),
    Case("users purge-unconfirmed", 2, ("users", "purge-unconfirmed", "--older-than-hours", "1"),
         "must be at least BASTION_CONFIRM_HOURS"),
    Case("users retire-deleted", 0, ("users", "retire-deleted"),
         "Retired 1 username(s) of deleted accounts: ann.", _deleted_without_retiring),
    Case("users retire-deleted", 0, ("users", "retire-deleted"),
         "0 username(s) retired: no deleted account's name is left to retire; nothing changed."),
    Case("users retire-deleted", 2, ("users", "retire-deleted", "--all"), "No such option"),
    Case("users release-username", 0, RELEASE, "'ann' is no longer retired", _retired),
    Case("users release-username", 0, RELEASE, "'ann' is not retired; nothing changed."),
    Case("users release-username", 1, (*RELEASE[:3], "--reason", "why"), "10 to 500 characters",
         _retired),
    Case("users release-username", 2, RELEASE[:3], "Missing option '--reason'", _retired),
    Case("users release-username", 2, ("users", "release-username", "\u0430nn", *RELEASE[3:]),
         "'\\u0430nn' is no username", _retired),
    Case("users release-username", 1, RELEASE, "An account holds 'ann'", _viewer_retired),
    Case("sessions revoke", 0, ("sessions", "revoke", "ann"), "Ended 0 session(s) of ann.",
         _viewer),
    Case("sessions revoke", 1, ("sessions", "revoke", "nobody"), "No account named 'nobody'."),
    Case("sessions revoke", 2, ("sessions", "revoke"), "Give a username or --all"),
    Case("secret-key reseal", 0, ("secret-key", "reseal"), "0 TOTP secret(s) sealed again"),
    Case("secret-key reseal", 1, ("secret-key", "reseal"), "No configured key opens",
         _lost_secret),
    Case("secret-key reseal", 2, ("secret-key", "reseal", "--batch-size", "0"), "--batch-size"),
    Case("secret-key reseal", 3, ("secret-key", "reseal"), "made under fallback key 1",
         _rotated),
    Case("audit export", 0, ("audit", "export"), "created_at"),
    Case("audit export", 0, ("audit", "export", "--user", "nobody"),
         "No account, present or deleted, was ever named 'nobody'; nothing matched."),
    Case("audit export", 1, ("audit", "export"), "standard output is closed", stdout="closed"),
    Case("audit export", 2, ("audit", "export", "--since", "2026-02-01", "--until", "2026-01-01"),
         "--since is after --until"),
    Case("content refresh-search", 0, ("content", "refresh-search"),
         "0 article(s) changed, 0 already up to date."),
    Case("content refresh-search", 0, ("content", "refresh-search"),
         "1 article(s) changed, 0 already up to date.", _unsearchable),
    Case("content refresh-search", 0, ("content", "refresh-search"),
         "0 article(s) changed, 1 already up to date.", _current_article),
    Case("content refresh-search", 1, ("content", "refresh-search"),
         "were saved again each time", _edited_at_every_try),
    Case("content refresh-search", 2, ("content", "refresh-search", "--batch-size", "0"),
         "--batch-size"),
    Case("uploads check", 0, ("uploads", "check"), "Upload store is consistent."),
    Case("uploads check", 1, ("uploads", "check"), f"orphan file: {ORPHAN}", _orphan),
    Case("uploads check", 1, ("uploads", "check", "--prune", "--min-age", "0"),
         f"could not prune orphan file: {ORPHAN}", _orphan_that_will_not_go),
    Case("uploads check", 1, ("uploads", "check"), "cannot read the upload store",
         _store_is_a_file),
    Case("uploads check", 2, ("uploads", "check", "--min-age", "-1"), "--min-age"),
    Case("api new-key", 0, ("api", "new-key", "--kid", "k1"), '"kid": "k1"'),
    Case("api new-key", 1, ("api", "new-key"), "standard output is closed", stdout="closed"),
    Case("api new-key", 2, ("api", "new-key", "--kid"), "requires an argument"),
    Case("security check", 0, ("security", "check"), "No problems found."),
    Case("security check", 1, ("security", "check", "--fail-level", "warning"),
         "SESSION_COOKIE_HTTPONLY", _unsafe_cookie),
    Case("security check", 2, ("security", "check", "--ignore", "BST-NOPE"),
         "unknown check id(s): BST-NOPE"),
    Case("security list", 0, ("security", "list"), "BST-E505"),
    Case("security list", 1, ("security", "list"), "could not write the output: No space left",
         stdout="full"),
    Case("security list", 2, ("security", "list", "--all"), "No such option"),
    Case("db", 0, ("db", "current"), ""),
    Case("db", 1, ("db", "upgrade", "no-such-revision"), "Can't locate revision"),
    Case("db", 2, ("db", "no-such-command"), "No such command"),
    Case("limiter", 0, ("limiter", "config"), "RATELIMIT"),
    Case("limiter", 1, ("limiter", "clear", "--key", "192.0.2.1", "-y"),
         "Error: cannot reach the rate limiter's store: ConnectionError:", _redis_refused,
         process=True),
    Case("limiter", 2, ("limiter", "no-such-command"), "No such command"),
    Case("routes", 0, ("routes",), "/healthz"),
    Case("routes", 2, ("routes", "--sort", "nonsense"), "--sort"),
    Case("run", 1, ("run", "--port", "{busy}"), "Address already in use"),
    Case("run", 2, ("run", "--port", "not-a-port"), "--port"),
    Case("shell", 0, ("shell",), "now exiting InteractiveConsole", input=""),
    Case("shell", 2, ("shell", "--all"), "No such option"),
]

# A command of the database is run against one it cannot reach; "database" in each row.
DATABASE_CASES = {
    "create-admin": CREATE,
    "setup-url": ("setup-url",),
    "users list": ("users", "list"),
    "users disable": ("users", "disable", "ann"),
    "users set-role": ("users", "set-role", "ann", "viewer"),
    "users reset-2fa": ("users", "reset-2fa", "ann", "--reason", "Video call, ID seen"),
    "users purge-unconfirmed": ("users", "purge-unconfirmed"),
    "users retire-deleted": ("users", "retire-deleted"),
    "users release-username": RELEASE,
    "sessions revoke": ("sessions", "revoke", "--all"),
    "secret-key reseal": ("secret-key", "reseal"),
    "audit export": ("audit", "export"),
    "content refresh-search": ("content", "refresh-search"),
    "uploads check": ("uploads", "check"),
    "db": ("db", "current"),
}

NOT_RUN = {("run", 0): "serves until stopped"}


def _id(case: Case) -> str:
    return f"{case.command}-{case.status}-{case.says[:30] or ' '.join(case.args)}"


def _run_process(args: list[str], stdin: str | None, tmp: Path) -> tuple[int, str, None]:
    """(status, output) of ``flask --app bastion <args>`` in a process of its own, with the
    environment the case prepared."""
    env = {
        **os.environ,
        "BASTION_ENV": "development",
        "BASTION_DATABASE_URL": f"sqlite:///{tmp / 'bastion.db'}",
        "BASTION_UPLOAD_DIR": str(tmp / "uploads"),
        "BASTION_OUTBOX_DIR": str(tmp / "outbox"),
    }
    proc = subprocess.run([FLASK, "--app", "bastion", *args], env=env, cwd=tmp, input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout + proc.stderr, None


def _run(app: Flask, args: list[str], stdin: str | None, stdout: str | None,
         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
         ) -> tuple[int, str, BaseException | None]:
    """(status, output, exception) of ``flask --app bastion <args>`` run in this process."""
    info = ScriptInfo(create_app=lambda: app)
    if stdout is None:
        result = app.test_cli_runner().invoke(cli=flask_cli, args=args, obj=info, input=stdin)
        return result.exit_code, result.output, result.exception
    # click's runner gives the command a stream of its own: run click's main instead.
    stream: IO[str] | None = None
    if stdout == "full":
        stream = open("/dev/full", "w", encoding="utf-8")  # noqa: SIM115
    monkeypatch.setattr(sys, "stdout", stream)
    try:
        with pytest.raises(SystemExit) as ended:
            flask_cli.main(args, prog_name="flask", obj=info)
    finally:
        monkeypatch.undo()
        if stream is not None:
            with contextlib.suppress(OSError):  # what the failed write left in the buffer
                stream.close()
    code = ended.value.code
    return int(code or 0) if not isinstance(code, str) else 1, capsys.readouterr().err, None


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_each_command_exits_with_its_documented_status(
    app: Flask, case: Case, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], listening_port: int,
) -> None:
    # An empty store of its own: the session's store holds what earlier tests left.
    monkeypatch.setitem(app.config, "UPLOAD_DIR", str(tmp_path / "uploads"))
    if case.prepare is not None:
        case.prepare(app, monkeypatch, tmp_path)
    args = [a.replace("{busy}", str(listening_port)) for a in case.args]

    if case.process:
        status, output, exception = _run_process(args, case.input, tmp_path)
    else:
        status, output, exception = _run(app, args, case.input, case.stdout, monkeypatch, capsys)

    assert status == case.status, output
    assert case.says in output
    assert exception is None or isinstance(exception, SystemExit), repr(exception)
    assert "Traceback" not in output


@pytest.mark.parametrize("command", sorted(DATABASE_CASES))
def test_a_database_the_command_cannot_reach_is_status_1_and_one_line(
    tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bastion import create_app

    url = f"postgresql+psycopg://bastion@127.0.0.1:{refused_port()}/bastion"
    app = create_app(base_config(tmp_path, url))

    with app.app_context():
        status, output, exception = _run(
            app, list(DATABASE_CASES[command]), f"{PASSPHRASE}\n", None, monkeypatch, capsys)

    assert status == 1, output
    assert isinstance(exception, SystemExit), repr(exception)
    assert "Error: cannot use the database: OperationalError:" in output


def test_the_table_names_every_registered_command(app: Flask) -> None:
    """A new command (or subcommand) without documented statuses fails here."""
    table = set(documented())
    commands = registered(app)
    assert commands - table == set(), "commands missing from docs/commands.md"
    assert table - commands == set(), "docs/commands.md names commands that do not exist"


def test_every_documented_status_is_produced_by_a_test() -> None:
    """The table and the cases above say the same: no status documented and never checked,
    none checked and not documented."""
    run = {(c.command, c.status) for c in CASES} | {(c, 1) for c in DATABASE_CASES}
    claimed = {(name, s) for name, statuses in documented().items() for s in statuses}
    assert claimed - run - NOT_RUN.keys() == set(), "documented, never produced"
    assert run - claimed == set(), "produced, not documented"
    for command in DATABASE_CASES:
        row = next(line for line in DOC.read_text(encoding="utf-8").splitlines()
                   if line.startswith(f"| `{command}`"))
        assert "database" in row.split("|")[3], command


@pytest.mark.parametrize("status", [0, 1, 2, 3])
def test_the_scheme_explains_each_status(status: int) -> None:
    scheme = DOC.read_text(encoding="utf-8").split("## The scheme", 1)[1].split("## ", 1)[0]
    assert re.search(rf"^\| {status} \| \S", scheme, re.M)
