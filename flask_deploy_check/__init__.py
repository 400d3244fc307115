"""Security checks for any Flask application: ``flask security check [--deploy]``.

The Flask counterpart of Django's ``manage.py check --deploy``: configuration checks,
live checks of real responses, and an optional dependency audit, each finding with a
stable id (``BST-E001``), severity, rationale, fix and ASVS 5.0 reference.
"""

from __future__ import annotations

from flask_deploy_check.findings import Finding, Severity
from flask_deploy_check.runner import Report, run_checks

__all__ = ["Finding", "Report", "Severity", "run_checks"]
