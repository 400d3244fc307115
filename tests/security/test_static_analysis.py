"""Static checks over the code: dangerous sinks simply do not exist in Bastion.

Bandit runs with the plugins that map to these requirements; any finding (at any
confidence) fails. A finding that is a false positive is fixed in code or annotated with a
``# nosec <id>`` and a reason next to it, so each exception is reviewed in the diff.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["bastion", "flask_deploy_check"]
BANDIT_TESTS = {
    "B102": "exec",
    "B307": "eval",
    "B301": "pickle",
    "B302": "marshal",
    "B303": "md5/sha1 for security",
    "B324": "weak hash",
    "B304": "insecure cipher",
    "B305": "ECB mode",
    "B413": "pycrypto",
    "B501": "TLS verification disabled",
    "B502": "old SSL/TLS versions",
    "B506": "yaml.load",
    "B602": "subprocess with shell",
    "B604": "shell=True in any call",
    "B605": "os.system",
    "B608": "SQL built from strings",
    "B609": "wildcard injection",
    "B701": "Jinja autoescape off",
    "B702": "Mako templates",
    "B703": "Django mark_safe",
    "B704": "markupsafe Markup on text that is not a literal",
    "B201": "Flask debug=True",
    "B105": "hard-coded password string",
    "B106": "hard-coded password argument",
    "B311": "non-cryptographic random",
}


def _bandit(tests: list[str]) -> list[dict[str, object]]:
    proc = subprocess.run(
        [sys.executable, "-m", "bandit", "-q", "-r", *PACKAGES, "-f", "json",
         "-t", ",".join(tests), "--exclude", "*/migrations/*"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    report = json.loads(proc.stdout)
    assert not report.get("errors"), report["errors"]
    return list(report["results"])


@pytest.mark.asvs(
    "V1.2.4", "V1.2.5", "V1.3.2", "V1.3.7", "V1.5.2", "V11.3.1", "V11.3.2", "V11.4.1",
    "V12.3.2", "V13.4.2", "V11.5.1", "V13.3.1",
)
def test_bandit_finds_no_dangerous_sink() -> None:
    findings = _bandit(sorted(BANDIT_TESTS))
    described = [
        f"{f['filename']}:{f['line_number']} {f['test_id']} {f['issue_text']}" for f in findings
    ]
    assert findings == [], "\n".join(described)


def _python_sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts]


@pytest.mark.asvs("V1.3.7")
def test_no_template_is_built_from_strings() -> None:
    """render_template_string and Template(...) on runtime text would allow SSTI."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in _python_sources()
        if "render_template_string" in p.read_text() or "jinja2.Template(" in p.read_text()
    ]
    assert offenders == []


REGEX_CALLS = {"compile", "search", "match", "fullmatch", "sub", "subn", "split", "findall",
               "finditer"}
LOG_CALLS = {"debug", "info", "warning", "error", "critical", "exception"}


def _module_names(tree: ast.Module) -> set[str]:
    """Names bound at module level (constants and imports): never request text."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _fixed(node: ast.expr, constants: set[str]) -> bool:
    """A literal, a module-level name or an attribute of one (``schemas.ONE_LINE``)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Constant) or (isinstance(node, ast.Name) and node.id in constants)


def _regex_offenders(source: str) -> list[int]:
    """Lines where a pattern that is not fixed text reaches ``re`` without ``re.escape``."""
    tree = ast.parse(source)
    constants = _module_names(tree)
    return [
        node.lineno for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
        and node.func.attr in REGEX_CALLS and node.args
        and not _fixed(node.args[0], constants)
        and not (isinstance(node.args[0], ast.Call)
                 and getattr(node.args[0].func, "attr", "") == "escape")
    ]


def _format_offenders(source: str) -> list[int]:
    """Lines where runtime text is used as a format string: ``.format``/``.format_map`` on
    anything but fixed text, or a log call whose message is not a literal (its arguments
    are %-formatted into it)."""
    tree = ast.parse(source)
    constants = _module_names(tree)
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        receiver = node.func.value
        if node.func.attr in {"format", "format_map", "vformat"} and not _fixed(receiver, constants):
            lines.append(node.lineno)
        named = isinstance(receiver, ast.Name) and receiver.id in {"log", "logger", "logging"}
        is_logger = named or (isinstance(receiver, ast.Attribute) and receiver.attr == "logger")
        if (node.func.attr in LOG_CALLS and is_logger and node.args
                and not isinstance(node.args[0], ast.Constant)):
            lines.append(node.lineno)
    return lines


@pytest.mark.asvs("V1.2.9")
def test_user_text_never_becomes_a_regex() -> None:
    """Every pattern is fixed text (a literal or a module constant) or goes through re.escape."""
    offenders = [f"{p.relative_to(ROOT)}:{line}" for p in _python_sources()
                 for line in _regex_offenders(p.read_text())]
    assert offenders == []


@pytest.mark.asvs("V1.3.10")
def test_user_text_never_becomes_a_format_string() -> None:
    offenders = [f"{p.relative_to(ROOT)}:{line}" for p in _python_sources()
                 for line in _format_offenders(p.read_text())]
    assert offenders == []


@pytest.mark.asvs("V1.2.9", "V1.3.10")
@pytest.mark.parametrize(("source", "scan"), [
    ("import re\ndef f(q, t):\n    return re.search(q, t)\n", _regex_offenders),
    ("import re\ndef f(q, t):\n    return re.compile(f'^{q}$').match(t)\n", _regex_offenders),
    ("import re\ndef f(q, t):\n    return re.split(q + '+', t)\n", _regex_offenders),
    ("def f(q, user):\n    return q.format(user=user)\n", _format_offenders),
    ("def f(q, d):\n    return q.format_map(d)\n", _format_offenders),
    ("import logging\nlog = logging.getLogger()\ndef f(q, x):\n    log.warning(q, x)\n",
     _format_offenders),
], ids=["param-pattern", "f-string-pattern", "built-pattern", "format", "format-map", "log"])
def test_the_scans_catch_user_text_in_a_pattern_or_format(source: str, scan: Any) -> None:
    assert scan(source) != []
    fixed = "import re\nPAT = re.compile('a+')\nREF = '#/{m}'\n" \
            "def f(q, t):\n    return re.search(re.escape(q), t), REF.format(m=q), PAT.match(t)\n"
    assert _regex_offenders(fixed) == _format_offenders(fixed) == []
