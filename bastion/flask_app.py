"""The Flask class Bastion runs on: Flask, minus one question asked on every request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

# Hooks, views and handlers are registered once, so the set stays this small; a caller
# that hands over a new function per request is served uncached past the bound.
_MAX_REMEMBERED = 1024


class BastionFlask(Flask):
    """Remembers which hooks and views are plain functions.

    Flask calls ``ensure_sync`` on every before/after/teardown hook and on the view of every
    request (about twenty-five times for an API call), and each call asks
    ``inspect.iscoroutinefunction``, which unwraps the function and reads its code flags:
    about half a microsecond each on the slowest bench host, for an answer that cannot
    change while the function lives. Plain functions are remembered (the set holds them,
    so an id is never reused); ``async def`` ones still go through Flask's own wrapping
    every time.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain_functions: set[Callable[..., Any]] = set()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            if func in self._plain_functions:
                return func
        except TypeError:  # an unhashable callable: ask Flask every time
            return super().ensure_sync(func)
        wrapped = super().ensure_sync(func)
        if wrapped is func and len(self._plain_functions) < _MAX_REMEMBERED:
            self._plain_functions.add(func)
        return wrapped
