"""The one-time setup link creates the first admin, once, and only while none exists."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from bastion.auth.services import admin_exists
from bastion.extensions import db
from bastion.models import AuditEvent, SetupToken, User, utcnow
from bastion.setup.services import issue_setup_token
from tests.support.auth import csrf_token

ADMIN = {"username": "root-admin", "email": "admin@example.org", "password": "granite orchard lantern 1987",
         "confirm": "granite orchard lantern 1987"}


def _submit(client: FlaskClient, token: str, **data: str):  # type: ignore[no-untyped-def]
    path = f"/setup/{token}"
    page = client.get(path)
    if page.status_code != 200:
        return page
    return client.post(path, data={**ADMIN, **data, "csrf_token": csrf_token(client, path)})


@pytest.mark.asvs("V6.3.2")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_fresh_install_has_no_default_account(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    """A database built by the migrations, under a started app, holds no account at all:
    the well-known default names and passwords get nothing, and the first admin can come
    only from a one-time setup link."""
    from tests.support.account_fixtures import is_signed_in, sign_in

    app = make_app(backend=backend, migrate=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
        assert not admin_exists()
        client = app.test_client()
        for username, password in (("admin", "admin"), ("root", "root"),
                                   ("administrator", "password"), ("sa", "sa"),
                                   ("admin", "bastion")):
            resp = sign_in(client, username, password)
            assert resp.status_code == 200, username  # the form again, with its error
            assert not is_signed_in(client)
        db.session.remove()


@pytest.mark.asvs("V6.4.1")
def test_setup_link_creates_the_first_admin_once(app: Flask, client: FlaskClient) -> None:
    token = issue_setup_token()
    resp = _submit(client, token)
    assert resp.status_code == 302
    admin = db.session.scalar(select(User).where(User.username == "root-admin"))
    assert admin is not None and admin.is_admin and admin.email_confirmed_at
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.event == "setup.admin_created"))
    # Reuse of the same link, and any other outstanding link, is dead now.
    assert client.get(f"/setup/{token}").status_code == 404
    other = issue_setup_token()
    assert _submit(client, other, username="second").status_code == 404
    assert db.session.query(User).count() == 1


def test_the_setup_form_states_the_rules_it_enforces(app: Flask, client: FlaskClient) -> None:
    """It said only "12 to 128 characters. A passphrase works well.", then refused a
    passphrase containing the username, and named no rule for the username at all (the
    sign-up page named only part of it: not where '-' and '_' may stand)."""
    from bastion.auth.forms import PASSWORD_HINT

    token = issue_setup_token()
    page = client.get(f"/setup/{token}").get_data(as_text=True)
    assert PASSWORD_HINT in page
    assert ("3 to 32 letters, digits, &#39;-&#39; or &#39;_&#39;, starting and ending with a "
            "letter or digit.") in page
    assert "js/password-hint.js" in page
    resp = _submit(client, token, password="root-admin granite orchard",
                   confirm="root-admin granite orchard")
    assert resp.status_code == 422
    assert "must not contain your username or email address" in resp.get_data(as_text=True)


def test_setup_link_is_useless_once_an_admin_exists(app: Flask, client: FlaskClient) -> None:
    from bastion.auth.services import create_user

    token = issue_setup_token()
    create_user("cli-admin", "cli@example.test", "another long passphrase", role="admin", confirmed=True)
    assert client.get(f"/setup/{token}").status_code == 404


def test_expired_or_forged_setup_link_is_404(app: Flask, client: FlaskClient) -> None:
    token = issue_setup_token()
    db.session.execute(
        update(SetupToken).values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    assert client.get(f"/setup/{token}").status_code == 404
    assert client.get("/setup/forged-token-value").status_code == 404
    assert client.get("/setup/" + "x" * 500).status_code == 404


def test_weak_admin_password_is_a_form_error(app: Flask, client: FlaskClient) -> None:
    token = issue_setup_token()
    resp = _submit(client, token, password="short")
    assert resp.status_code == 422
    assert "at least 12" in resp.get_data(as_text=True)
    assert db.session.query(User).count() == 0
    # The link still works after a failed attempt.
    assert client.get(f"/setup/{token}").status_code == 200


def test_create_admin_command(app: Flask) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["create-admin", "--username", "ops", "--email", "ops@example.org",
              "--password-stdin"], input="an operator passphrase\n"
    )
    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(User).where(User.username == "ops")).is_admin  # type: ignore[union-attr]
    again = runner.invoke(
        args=["create-admin", "--username", "ops", "--email", "x@example.org",
              "--password-stdin"], input="an operator passphrase\n"
    )
    assert again.exit_code != 0
    assert "taken" in again.output


def _setup_tokens() -> int:
    db.session.rollback()  # see rows committed by the other app's engine
    return db.session.query(SetupToken).count()


@pytest.mark.asvs("V6.4.1", "V16.2.5")
def test_only_flask_run_mints_and_prints_a_setup_link(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flask marks every ``flask`` command as run from the CLI; a migration job or cron line
    must not put a live admin-creating link into its logs."""
    import click
    from click.testing import CliRunner
    from flask.cli import FlaskGroup

    from bastion import create_app

    config = {"ENV_NAME": "testing", "TESTING": False, "DATABASE_URL": app.config["DATABASE_URL"],
              "UPLOAD_DIR": app.config["UPLOAD_DIR"], "OUTBOX_DIR": app.config["OUTBOX_DIR"]}
    built: list[Flask] = []

    def factory() -> Flask:
        built.append(create_app(dict(config)))
        return built[-1]

    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")  # FlaskGroup sets it; undone afterwards
    cli = FlaskGroup(create_app=factory, load_dotenv=False, set_debug_flag=False)
    for args in (["users", "list"], ["db", "current"], ["audit", "export"]):
        result = CliRunner().invoke(cli, args)
        assert "/setup/" not in result.output, args
    assert built and _setup_tokens() == 0
    # The development server itself still announces the link.
    with click.Context(click.Command("run")):
        factory()
    assert _setup_tokens() == 1
    for made in built:
        with made.app_context():
            db.engine.dispose()


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("email", [
    "ops@example.org, attacker@evil.example",  # a second recipient of every notice
    "Ops <ops@example.org>",
    "ops@example.org\r\nBcc: attacker@evil.example",  # header injection into every mail
    "ops@example.org\u2028Bcc: attacker@evil.example",
    "\u001b[2Jops@example.org",  # terminal escapes for `users list`
    "not-an-address",
])
def test_create_admin_refuses_what_the_web_forms_refuse(app: Flask, email: str) -> None:
    """The command line is no back door around the address rules: each mail to the account
    (password changed, 2FA reset) would go to extra recipients or fail on its headers."""
    result = app.test_cli_runner().invoke(
        args=["create-admin", "--username", "ops", "--email", email,
              "--password-stdin"], input="an operator passphrase\n"
    )
    assert result.exit_code != 0
    assert "valid email address" in result.output
    assert db.session.query(User).count() == 0


@pytest.mark.asvs("V16.3.3")
def test_setup_url_command_is_audited_and_fails_loudly(app: Flask) -> None:
    """A link that can create an admin is a credential: issuing one leaves a trace (without
    the secret), and a command that issued nothing does not report success to scripts."""
    runner = app.test_cli_runner()
    result = runner.invoke(args=["setup-url", "--base-url", "https://bastion.example.org"])
    assert result.exit_code == 0, result.output
    issued = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "setup.link_issued")
    ).all()
    assert len(issued) == 1
    token_row = db.session.scalar(select(SetupToken))
    assert token_row is not None and token_row.token_hash not in str(issued[0].details)
    from bastion.auth.services import create_user

    create_user("cli-admin", "cli@example.org", "another long passphrase", role="admin",
                confirmed=True)
    refused = runner.invoke(args=["setup-url"])
    assert refused.exit_code != 0
    assert "no link issued" in refused.output


@pytest.mark.asvs("V16.2.1")
def test_a_setup_link_issued_at_the_console_names_the_operator(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every other console command names who ran it; the link that creates an admin was
    audited with no one at all, so the trail could not say who in the team handed it out."""
    monkeypatch.setenv("LOGNAME", "opsalice")
    monkeypatch.delenv("SUDO_USER", raising=False)
    result = app.test_cli_runner().invoke(args=["setup-url"])
    assert result.exit_code == 0, result.output
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "setup.link_issued"))
    assert event is not None and event.actor_id is None
    assert event.details == {"minutes": 60, "via": "cli", "operator": "opsalice"}


@pytest.mark.asvs("V6.4.1", "V2.3.3")
def test_two_setup_links_used_at_once_make_one_admin_and_no_error(app: Flask) -> None:
    """Each request claims its own link, then ends every other: without one lock order the
    two transactions waited for each other and PostgreSQL aborted one with a 500."""
    import threading

    from bastion.setup.services import create_first_admin

    tokens = [issue_setup_token(), issue_setup_token()]
    barrier = threading.Barrier(len(tokens))
    results: list[object] = []

    def use(token: str, name: str) -> None:
        with app.app_context():
            barrier.wait(10)
            try:
                user = create_first_admin(token, name, f"{name}@example.org", ADMIN["password"])
                results.append(user.username if user else None)
            except Exception as exc:  # the failure under test: recorded, not raised in a thread
                results.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=use, args=(t, f"admin-{i}")) for i, t in enumerate(tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [r for r in results if isinstance(r, Exception)] == []
    assert results.count(None) == 1  # the other link was dead by the time it was claimed
    assert db.session.query(User).count() == 1


@pytest.mark.asvs("V1.1.1")
def test_the_first_admin_and_create_admin_store_one_spelling_of_an_idn_domain(
    app: Flask, client: FlaskClient
) -> None:
    """Every way in stores the same canonical address, so the command line cannot make a
    second account for a mailbox the setup page already gave one."""
    assert _submit(client, issue_setup_token(), email="Admin@Bücher.example").status_code == 302
    assert db.session.scalar(select(User.email)) == "admin@xn--bcher-kva.example"
    runner = app.test_cli_runner()
    again = runner.invoke(args=["create-admin", "--username", "ops", "--email",
                                "ADMIN@XN--BCHER-KVA.EXAMPLE", "--password-stdin"],
                          input="an operator passphrase\n")
    assert again.exit_code != 0 and "already exists" in again.output
    made = runner.invoke(args=["create-admin", "--username", "ops", "--email",
                               "ops@bücher.example", "--password-stdin"],
                         input="an operator passphrase\n")
    assert made.exit_code == 0, made.output
    ops = db.session.scalar(select(User).where(User.username == "ops"))
    assert ops is not None and ops.email == "ops@xn--bcher-kva.example"


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("email", ["admin@xn--zz.example", "admin@1.xn--4dbc.example"])
def test_an_invalid_idn_domain_is_refused_by_setup_and_create_admin(
    app: Flask, client: FlaskClient, email: str
) -> None:
    token = issue_setup_token()
    resp = _submit(client, token, email=email)
    assert resp.status_code == 422
    assert "Enter a valid email address." in resp.get_data(as_text=True)
    result = app.test_cli_runner().invoke(
        args=["create-admin", "--username", "ops", "--email", email,
              "--password-stdin"], input="an operator passphrase\n"
    )
    assert result.exit_code != 0 and "valid email address" in result.output
    assert db.session.query(User).count() == 0


@pytest.mark.asvs("V6.2.1")
def test_a_mistyped_repeat_keeps_the_link_and_creates_no_admin(
    app: Flask, client: FlaskClient
) -> None:
    """The link works once: a typo in the password must not make an admin nobody can use."""
    token = issue_setup_token()
    resp = _submit(client, token, confirm="granite orchard lantern 1988")
    assert resp.status_code == 422 and b"The passwords do not match." in resp.data
    assert not admin_exists()
    assert _submit(client, token).status_code == 302


@pytest.mark.asvs("V6.2.1", "V6.2.4")
def test_every_problem_of_the_setup_form_is_named_in_one_round(
    app: Flask, client: FlaskClient
) -> None:
    """A badly formed username was named only after the email and password were put right,
    and a common password only once its repeat matched."""
    from bastion.auth.services import username_problem

    token = issue_setup_token()
    resp = _submit(client, token, username="carol smith", email="not-an-email",
                   password="short", confirm="short")
    page = resp.get_data(as_text=True)
    problem = username_problem("carol smith")
    assert resp.status_code == 422 and problem
    assert problem.replace("'", "&#39;") in page and "valid email" in page
    resp = _submit(client, token, password="password123456", confirm="password1234567")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "too common" in page and "The passwords do not match." in page
    assert not admin_exists()


@pytest.mark.asvs("V2.2.1")
def test_create_admin_refuses_a_local_part_over_64_octets(app: Flask) -> None:
    """The command line keeps the forms' RFC 5321 limit: mail to the admin could be refused."""
    result = app.test_cli_runner().invoke(
        args=["create-admin", "--username", "ops", "--email", "a" * 65 + "@example.org",
              "--password-stdin"], input="an operator passphrase\n"
    )
    assert result.exit_code != 0 and "The part before the @ is too long" in result.output
    assert db.session.query(User).count() == 0
    made = app.test_cli_runner().invoke(
        args=["create-admin", "--username", "ops", "--email", "a" * 64 + "@example.org",
              "--password-stdin"], input="an operator passphrase\n"
    )
    assert made.exit_code == 0, made.output
