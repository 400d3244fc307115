"""What a form reads from a request: text parts for text fields, file parts for file fields.

Why: Flask-WTF gives every form ``request.files`` merged over ``request.form`` and, for a
JSON body, the decoded JSON. A text field could then receive a file part (a
``FileStorage``) or a JSON number, object or null, and WTForms' validators raise on it
(``Length`` calls ``len``): a title, username or password sent as a file part, or as JSON
with the ``X-CSRFToken`` header, answered 500 on every form, anonymous sign-in and
registration included. Browsers post the site's forms as urlencoded or multipart form data,
so a text field reads only text parts, a file field only file parts, and a JSON body is no
form input at all: the form is then empty and says which fields are missing (422). Every
form of the site derives from ``BastionForm``, which reads requests this way.
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto  # the "read the request" default of FlaskForm(formdata=...)
from werkzeug.datastructures import MultiDict
from wtforms.fields import FileField


def form_input(_meta: Any, form: FlaskForm, formdata: Any) -> MultiDict[str, Any] | None:
    """``FlaskForm.Meta.wrap_formdata``: the submitted parts each field may read, or None
    when nothing was submitted (the fields keep their defaults, as with Flask-WTF's own).
    Explicit ``formdata`` (``request.args`` for filters, ``None`` for display) is kept."""
    if formdata is not _Auto:
        return formdata  # type: ignore[no-any-return]
    if not form.is_submitted() or not (request.form or request.files):
        return None
    file_fields = {field.name for field in form if isinstance(field, FileField)}
    parts: MultiDict[str, Any] = MultiDict(
        (name, value) for name, value in request.files.items(multi=True) if name in file_fields
    )
    for name, value in request.form.items(multi=True):
        if name not in file_fields:
            parts.add(name, value)
    return parts


class BastionForm(FlaskForm):
    """The base of every form of the site: Flask-WTF's, reading ``form_input``.

    A class rather than a patch of ``FlaskForm.Meta``: the rule belongs to these forms, not
    to every Flask-WTF form the process may load. ``tests/security/test_asvs_input.py``
    checks that no form of the site derives from ``FlaskForm`` around it.
    """

    class Meta:
        def wrap_formdata(self, form: FlaskForm, formdata: Any) -> MultiDict[str, Any] | None:
            return form_input(self, form, formdata)


def one_line_break(value: Any) -> Any:
    """A WTForms filter for text areas: every line break as the one ``\\n`` the services
    store and count.

    Browsers send each line break typed in a textarea as CRLF, two characters, so a form's
    ``Length`` counted a text of many lines as longer than the service (and the API) does:
    a 4,900-character comment in 350 lines was refused as over 5,000, and an article saved
    near its limit could not be saved again, unchanged, from its edit page.
    """
    if isinstance(value, str):
        return value.replace("\r\n", "\n").replace("\r", "\n")
    return value
