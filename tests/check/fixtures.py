"""Shared helpers for the security check tests: vulnerability fixtures and the JSON schema."""

from __future__ import annotations

import json
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from flask_deploy_check.deps import DepsOptions
from tests.support.services import refused_port

INSTALLED_FLASK = metadata.version("flask")


def schema() -> dict[str, Any]:
    """The JSON Schema shipped inside the package."""
    text = resources.files("flask_deploy_check").joinpath("schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def flask_advisory(fixed: str) -> dict[str, Any]:
    """An OSV entry affecting Flask from 0 up to (not including) ``fixed``."""
    return {
        "id": "GHSA-test-flsk-0001",
        "aliases": ["CVE-2099-0001"],
        "summary": "Test advisory for the installed Flask.",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "Flask"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}
                ],
            }
        ],
    }


def write_vuln_db(directory: Path, *, vulnerable: bool) -> Path:
    """A local OSV file: the advisory covers the installed Flask, or was fixed at it."""
    fixed = "999.0" if vulnerable else INSTALLED_FLASK
    path = directory / ("vulnerable.json" if vulnerable else "clean.json")
    path.write_text(json.dumps({"vulns": [flask_advisory(fixed)]}), encoding="utf-8")
    return path


def closed_port_url() -> str:
    """An OSV URL nothing listens on: the connection is refused at once."""
    return f"http://127.0.0.1:{refused_port()}/v1/query"


def deps_options(check_id: str, directory: Path, *, safe: bool) -> DepsOptions:
    """Dependency-audit cases: a vulnerable fixture for E503, an unreachable service for W504."""
    if check_id == "BST-E503":
        return DepsOptions(vuln_db=write_vuln_db(directory, vulnerable=not safe))
    if check_id == "BST-W504":
        if safe:
            return DepsOptions(vuln_db=write_vuln_db(directory, vulnerable=False))
        return DepsOptions(vuln_url=closed_port_url(), timeout=2)
    raise AssertionError(f"{check_id} has no dependency case")
