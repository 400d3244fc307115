"""Generate ``docs/security-check.md`` from the registry, so docs and code cannot drift.

Run ``python -m flask_deploy_check.docs docs/security-check.md`` after changing a check.
"""

from __future__ import annotations

import sys
from pathlib import Path

from flask_deploy_check.registry import CheckSpec, all_specs

INTRO = """\
# `flask security check`

The Flask counterpart of Django's `manage.py check --deploy`. It works on any Flask
application:

```console
$ flask --app yourapp security check --deploy
$ flask --app yourapp security check --deploy --format json --deps --fail-level warning
```

It inspects the configuration, sends real requests through `app.test_client()` (no server,
no network: `/` from an untrusted origin and from `Origin: null`, `http://…/`, a surely-missing
URL whose path ends in a little markup, and a 405 probe with an unused method) and
reads the headers, cookies and error pages the app really sends. The page shown when a view
fails is read too, without calling any view: an exception is raised in a request context and
handed to the app's own error handlers (`errorhandler(Exception)`, then the 500 handler) and
after_request hooks; it is not logged or signalled, even by a handler that logs or signals
what it catches (logging and `got_request_exception` are off meanwhile), so error trackers
see nothing. With `--deps` it audits the installed distributions for known vulnerabilities through pip-audit.

It reads settings and answers, not source code: what a view does with its input (a
`send_file` of a user-supplied path, SQL built from strings, a view that returns a
traceback itself) is for a static analyser such as Bandit or Semgrep, and the views behind
a login are only seen through the error handlers and hooks they share.

Options:

- `--deploy`: also run the deployment-only checks (marked *deploy* below).
- `--format text|json`: a table (coloured on a terminal unless `NO_COLOR` is set) or
  JSON for CI.
- `--fail-level warning|error`: exit 1 when a finding at or above this level exists
  (default `error`).
- `--deps`: audit the installed distributions with pip-audit.
- `--vuln-db PATH`: a local OSV JSON file (`{"vulns": [...]}` or a list) instead of the
  online service; environment variable `FLASK_SECURITY_VULN_DB`. A path that does not
  exist is a usage error (exit 2), not a skipped audit.
- `--vuln-url URL`: the OSV query endpoint of a mirror; `FLASK_SECURITY_VULN_URL`.
- `--deps-timeout SECONDS`: how long to wait for the vulnerability service (default 15).
- `--ignore ID`: silence a check (repeatable).

`flask security list` prints every check id.

The app is loaded the way a WSGI server such as gunicorn loads it: the Flask CLI's usual
override of `app.debug` from `FLASK_DEBUG` is skipped, so a `DEBUG = True` in the app's
own settings is seen (this needs the `flask.commands` entry point, i.e. the package
installed; through `app.cli.add_command` alone the app is loaded by the CLI first). An
app that fails to load is reported as an error with exit code 2, without a traceback.
Live checks never crash the run: a probe that raises becomes BST-W501 (BST-E505 when an
error-level check could not run, so the default fail level fails: an unverified control is
not a passed one), a probe answered with a server error becomes BST-I502, and the other
checks still run. Each probe reads at
most 1 MiB of the answer (an endless or streaming page cannot hang the run). Whatever the
app prints while it loads goes to stderr, so `--format json` output stays JSON.

**Exit codes**: 0 when no finding reaches the fail level, 1 otherwise, 2 for usage errors.

**Silencing**: list ids in the app's `DEPLOY_CHECK_SILENCED` config key (e.g. when TLS
redirects and HSTS are done by the proxy) or pass `--ignore`. Silenced findings are counted
in the summary.

**JSON**: `{"version": 1, "app": ..., "findings": [{"id", "severity", "title", "message",
"why", "fix", "asvs"}], "summary": {...}}`, described by `flask_deploy_check/schema.json`.
Fields are only added with a new `version`.

**Offline dependency audit**: without network the online service cannot be reached and
the check reports BST-W504 "could not check dependencies" (a warning, never "no
vulnerabilities"). Point `--vuln-db` at an OSV export to audit offline.

**Compared with Django**: every current `check --deploy` security check (W001-W025)
has a counterpart, listed in the Django column; W007 (X-XSS-Protection, which browsers
dropped) and W017 (CSRF_COOKIE_HTTPONLY, no practical benefit) are no longer in Django and
have none. Flask-WTF keeps the CSRF token in the session, so W016 (CSRF cookie Secure) is
BST-E101 for the session cookie plus BST-W111 for any other cookie. The Flask-specific
checks cover what Django does not have to: the Werkzeug debugger, Flask-Login and
Flask-Limiter settings, ProxyFix, Jinja autoescaping, and the headers and error pages the
app really sends.

**Ids are stable**: the letter gives the severity (E error, W warning, I info), the number
never changes meaning and is never reused.

## Checks
"""


def _mode(spec: CheckSpec) -> str:
    if spec.kind == "deps":
        return "--deps"
    if spec.kind == "meta":
        return "any run"
    mode = "deploy" if spec.deploy else "always"
    return f"{mode}, live" if spec.kind == "live" else mode


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown() -> str:
    """The whole document: intro, summary table, then one section per check."""
    specs = all_specs()
    lines = [INTRO]
    lines.append("| id | severity | runs | title | ASVS | Django |")
    lines.append("|---|---|---|---|---|---|")
    for spec in specs:
        lines.append(
            f"| [{spec.id}](#{spec.id.lower()}) | {spec.severity.label} | {_mode(spec)} | "
            f"{_cell(spec.title)} | {spec.asvs or '-'} | {spec.django or '-'} |"
        )
    for spec in specs:
        lines += [
            "",
            f"### {spec.id}",
            "",
            f"**{spec.title}** — {spec.severity.label}, runs: {_mode(spec)}"
            + (f", ASVS {spec.asvs}" if spec.asvs else "")
            + (f", Django `{spec.django}`" if spec.django else "")
            + ".",
            "",
            f"- Why: {spec.why}",
            f"- Fix: {spec.fix}",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Write the document to ``argv[0]`` or print it."""
    text = render_markdown()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
