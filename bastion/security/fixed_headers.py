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

from collections.abc import Iterable

from werkzeug.datastructures import Headers


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
        present = {name.lower() for name, _ in headers.items()}
        for name, lower, value in self.pairs:
            if lower not in present:
                headers.add(name, value)
            elif self.replace:
                headers[name] = value
        return present
