"""The faster WTForms attribute writer produces WTForms' own output, hostile input included."""

from __future__ import annotations

import itertools

import pytest
import wtforms.widgets
import wtforms.widgets.core
from flask import Flask
from markupsafe import Markup

from bastion.form_attributes import ORIGINAL, html_params

HOSTILE = [
    "plain",
    "",
    '"><script>alert(1)</script>',
    "a'b\"c&d<e>f",
    "x\u2028y\u00e9\U0001f600",
    "&quot; already",
    Markup('<a href="#">raw "markup"</a>'),
    Markup("&amp;"),
    0,
    12.5,
    None,
    True,
    False,
]
NAMES = ["value", "class_", "for_", "data_user_name", "aria_described_by", "id", "x<y"]


@pytest.mark.asvs("V1.2.1")
@pytest.mark.parametrize(("name", "value"), list(itertools.product(NAMES, HOSTILE)))
def test_each_attribute_is_written_exactly_as_wtforms_writes_it(name: str, value: object) -> None:
    fast = html_params(**{name: value})
    assert fast == ORIGINAL(**{name: value})
    assert isinstance(fast, Markup)
    assert "<script>" not in fast


@pytest.mark.asvs("V1.2.1")
def test_many_attributes_keep_wtforms_order_and_escaping() -> None:
    attrs = dict(zip(NAMES, HOSTILE, strict=False))
    attrs.update(required=True, readonly=False, name='n"ame')
    assert html_params(**attrs) == ORIGINAL(**attrs)
    assert html_params() == ORIGINAL() == Markup("")


def test_wtforms_widgets_and_labels_use_it(app: Flask) -> None:
    assert wtforms.widgets.core.html_params is html_params
    assert wtforms.widgets.html_params is html_params
    assert wtforms.widgets.core.Input.html_params is html_params
    assert wtforms.widgets.core.SubmitInput.html_params is html_params


@pytest.mark.asvs("V1.2.1")
def test_a_rendered_form_escapes_a_hostile_value(app: Flask) -> None:
    from wtforms import Form, StringField, TextAreaField

    class Probe(Form):
        title = StringField("Title <b>")
        body = TextAreaField("Body")

    form = Probe(data={"title": '"><img src=x onerror=alert(1)>', "body": "</textarea><script>"})
    html = "".join(str(part) for part in (form.title(**{"data-x": '"'}), form.body(), form.title.label))
    assert html == (
        '<input data-x="&#34;" id="title" name="title" type="text" '
        'value="&#34;&gt;&lt;img src=x onerror=alert(1)&gt;">'
        '<textarea id="body" name="body">\r\n&lt;/textarea&gt;&lt;script&gt;</textarea>'
        '<label for="title">Title &lt;b&gt;</label>'
    )
