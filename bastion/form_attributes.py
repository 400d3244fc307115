"""WTForms' ``html_params`` without ``Markup.format``: the same attributes, cheaper.

Why: WTForms 3.3 writes every attribute of every field with
``Markup('{k}="{v}"').format(k=k, v=v)``, which runs markupsafe's escaping formatter (the
pure-Python ``string.Formatter``) once per attribute. The account page, with six forms,
spent about 13% of its CPU there. This version escapes exactly as WTForms does (the name
with ``escape``; the value with ``escape``, then its double quotes, which only a ``Markup``
value can still hold) and builds the string with an f-string. ``ORIGINAL`` keeps WTForms'
own function: a test renders both on hostile names and values and asks for identical
output, so an upgrade that changes WTForms' escaping fails the test instead of drifting.
"""

from __future__ import annotations

from typing import Any

import wtforms.widgets
import wtforms.widgets.core as _core
from markupsafe import Markup, escape

ORIGINAL = _core.html_params


def html_params(**kwargs: Any) -> Markup:
    parts = []
    for key, value in sorted(kwargs.items()):
        name = escape(_core.clean_key(key))
        if value is True:
            parts.append(str(name))
        elif value is not False:
            parts.append(f'{name}="{str(escape(value)).replace(chr(34), "&quot;")}"')
    return Markup(" ".join(parts))  # noqa: S704  # nosec B704 - escaped above


def install() -> None:
    """Point WTForms' module function and every widget that copied it at ``html_params``."""
    if _core.html_params is html_params:
        return
    _core.html_params = html_params
    wtforms.widgets.html_params = html_params  # what Label uses
    for widget in vars(_core).values():
        if isinstance(widget, type) and "html_params" in vars(widget):
            widget.html_params = staticmethod(html_params)  # type: ignore[attr-defined]
