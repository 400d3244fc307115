"""Adding a response's fixed security headers in one pass over its headers.

Why: ``Headers.__setitem__`` and ``setdefault`` each walk every header already set,
lower-casing each name, and a ``setdefault`` for a missing name raises and catches a
``KeyError`` inside Werkzeug. Ten fixed headers on every answer cost about 150 name
comparisons and three exceptions that way. Here the names already present are
lower-cased once, and each fixed header is appended unless present. What a view set
itself is replaced or kept exactly as ``headers[name] = value`` or
``headers.setdefault(name, value)`` would (a test compares both ways).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from werkzeug.datastructures import Headers
from werkzeug.http import parse_set_header

# A Vary value as Werkzeug writes one: tokens (RFC 9110 5.6.2) joined by ", ". Parsing such
# a value and writing it again gives it back unchanged.
_TOKEN_LIST_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:, [!#$%&'*+\-.^_`|~0-9A-Za-z]+)*")
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class FixedHeaders:
    """Header values known at start-up, with their lower-cased names worked out once."""

    def __init__(self, pairs: Iterable[tuple[str, str]], *, replace: bool) -> None:
        self.pairs = [(name, name.lower(), value) for name, value in pairs]
        names = [lower for _, lower, _ in self.pairs]
        if len(set(names)) != len(names):
            # Appending both would send two values where a setter sends the last one.
            raise ValueError(f"a header is given twice: {[name for name, _, _ in self.pairs]}")
        # Validated as Headers.add would, once: a bad value fails at start-up.
        Headers([(name, value) for name, _, value in self.pairs])
        self.replace = replace

    def apply(self, headers: Headers) -> set[str]:
        """``headers[name] = value`` (replace) or ``setdefault`` for each pair.

        Returns the lower-cased names the headers had before, for the caller's own checks.
        """
        # Over the headers' own list: ``items()`` is a generator, resumed once per header.
        present = {name.lower() for name, _ in headers}
        for name, lower, value in self.pairs:
            if lower not in present:
                headers.add(name, value)
            elif self.replace:
                headers[name] = value
        return present


def add_vary(headers: Headers, name: str) -> None:
    """``response.vary.add(name)``, for the ``headers`` of that response.

    Why: Werkzeug's ``vary`` parses the header into a ``HeaderSet`` on every use and writes
    it back through ``headers["Vary"] =``, which walks every header; an API answer added
    three names that way (about a hundred calls). The result is the same here: no Vary yet
    gets ``name`` appended; a value Werkzeug wrote (tokens joined by ", ") gets ", name"
    unless it already holds the name (compared without case), replacing it as the setter
    would; anything else (quoted parts, other spacing) takes Werkzeug's own parsing.
    """
    current = headers.get("Vary")
    if _TOKEN_RE.fullmatch(name):  # a header name: Werkzeug writes it unquoted
        if current is None:
            headers.add("Vary", name)
            return
        if _TOKEN_LIST_RE.fullmatch(current):
            if name.lower() not in current.lower().split(", "):
                headers["Vary"] = f"{current}, {name}"
            return
    values = parse_set_header(current)
    if name.lower() not in values:
        values.add(name)
        headers["Vary"] = values.to_header()
