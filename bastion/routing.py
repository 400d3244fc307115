"""URL converters: one spelling per resource.

Why: Werkzeug's ``int`` converter matches ``\\d+``, which in Python's ``re`` also matches
every other script's digits, and ``int()`` reads them and leading zeros alike, so
``/articles/7``, ``/articles/007`` and ``/articles/`` followed by a full-width 7 (U+FF17)
or an Arabic-Indic 7 (U+0667) all named article 7. A second spelling of an address slips
past path-based rules in a proxy or firewall (``/admin/users/7/...`` blocked,
``/admin/users/07/...`` not) and splits caches. Here ``<int:...>`` matches only the
canonical spelling, the one ``url_for`` builds: ASCII digits, no sign, no leading zero;
anything else is the ordinary 404 page (or problem+json under ``/api/``), as for any
address that names nothing.

No route takes a 0: ids start at 1, so ``/articles/0`` is a 404 from the router too.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter


class CanonicalIdConverter(IntegerConverter):
    """``<int:...>`` for ids: ``[1-9][0-9]*`` only, so each id has exactly one spelling."""

    # An explicit ASCII class: \d in a str pattern matches any Unicode decimal digit.
    regex = r"[1-9][0-9]*"


def register_converters(app: Flask) -> None:
    """Replace ``int`` before any route is added: a rule binds its converter when added."""
    app.url_map.converters["int"] = CanonicalIdConverter
