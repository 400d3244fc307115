"""Checks on what the app emits: template escaping, template tooling, SQL and mail logging."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_deploy_check.context import CheckContext
from flask_deploy_check.registry import CheckResult, check

HTML_TEMPLATE_NAMES = ("page.html", "page.htm", "page.xhtml", "page.xml", "page.svg")


def unescaped_extensions(autoescape: bool | Callable[[str | None], bool]) -> list[str]:
    """Template extensions that Jinja would render without escaping."""
    if not callable(autoescape):
        return [] if autoescape else [name.rsplit(".", 1)[1] for name in HTML_TEMPLATE_NAMES]
    return [name.rsplit(".", 1)[1] for name in HTML_TEMPLATE_NAMES[:2] if not autoescape(name)]


@check(
    "BST-E401",
    title="Jinja autoescaping is off for HTML templates",
    why="Without autoescaping every {{ value }} from a user is written as raw markup: "
    "stored and reflected XSS.",
    fix="Keep Flask's default select_jinja_autoescape (or autoescape=True); mark trusted "
    "HTML explicitly with Markup after sanitising it.",
    asvs="V1.2.1",
)
def jinja_autoescape(ctx: CheckContext) -> CheckResult:
    """Escaping by default is Flask's main XSS defence; turning it off removes it."""
    autoescape: Any = ctx.app.jinja_env.autoescape
    missing = unescaped_extensions(autoescape)
    if missing:
        names = ", ".join(f".{ext}" for ext in missing)
        return f"app.jinja_env.autoescape does not escape {names} templates."
    return None


@check(
    "BST-W402",
    title="SQLAlchemy echoes every statement",
    why="SQLALCHEMY_ECHO logs each query with its parameters: password hashes, tokens and "
    "personal data end up in the logs, and logging slows every request.",
    fix="Set SQLALCHEMY_ECHO = False (and no echo in SQLALCHEMY_ENGINE_OPTIONS) in production.",
    asvs="V16.2.5",
    deploy=True,
)
def sqlalchemy_echo(ctx: CheckContext) -> CheckResult:
    """Logged parameters are a data leak."""
    config = ctx.app.config
    options = config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}
    if config.get("SQLALCHEMY_ECHO") or (isinstance(options, dict) and options.get("echo")):
        return "SQLALCHEMY_ECHO (or engine option echo) is on."
    return None


@check(
    "BST-W403",
    title="Template development options are on",
    why="TEMPLATES_AUTO_RELOAD stats template files on every render and "
    "EXPLAIN_TEMPLATE_LOADING logs the search path: development tooling that costs time "
    "and reveals file layout in production.",
    fix="Leave TEMPLATES_AUTO_RELOAD and EXPLAIN_TEMPLATE_LOADING unset in production.",
    asvs="V15.2.3",
    deploy=True,
)
def template_debug_options(ctx: CheckContext) -> CheckResult:
    """Development-only switches left on."""
    enabled = [
        name
        for name in ("TEMPLATES_AUTO_RELOAD", "EXPLAIN_TEMPLATE_LOADING")
        if ctx.app.config.get(name) is True
    ]
    return f"{' and '.join(enabled)} enabled." if enabled else None


# Flask-Mailman's backends that print each message or save it as a file (Django's names).
_MAIL_BACKENDS_THAT_KEEP_MESSAGES = {
    "console": "prints every message to stdout",
    "file": "writes every message to a file",
    "flask_mailman.backends.console.emailbackend": "prints every message to stdout",
    "flask_mailman.backends.filebased.emailbackend": "writes every message to a file",
}


@check(
    "BST-W404",
    title="Outgoing mail is written to the log or to files",
    why="Mail carries live credentials: password-reset, confirmation and sign-in links work "
    "for whoever reads them. Flask-Mailman's console and file backends print or save every "
    "message, and MAIL_DEBUG (Flask-Mail) makes smtplib print the whole SMTP conversation, "
    "the relay password included: the links end up in logs and files that many more people "
    "and systems can read than the mailbox they were meant for.",
    fix="In production send mail through an SMTP relay: leave MAIL_DEBUG off (Flask-Mail) "
    "and MAIL_BACKEND at its default, smtp (Flask-Mailman).",
    asvs="V16.2.5",
    deploy=True,
)
def mail_written_out(ctx: CheckContext) -> CheckResult:
    """Development mail delivery left on in production."""
    config = ctx.app.config
    problems = []
    if config.get("MAIL_DEBUG"):
        problems.append("MAIL_DEBUG is on: smtplib prints every message it sends.")
    backend = config.get("MAIL_BACKEND")
    if isinstance(backend, str) and (what := _MAIL_BACKENDS_THAT_KEEP_MESSAGES.get(backend.lower())):
        problems.append(f"MAIL_BACKEND {backend!r} {what}.")
    return problems or None
