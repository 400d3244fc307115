"""No password hints or knowledge-based "security questions" anywhere (ASVS V6.4.2)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest
from flask_wtf import FlaskForm
from pydantic import BaseModel

import bastion

# ("hint" alone is the harmless first characters of a personal access token, shown in lists.)
KNOWLEDGE = re.compile(r"(password|pw|login)_?hint|question|answer|maiden|first_pet|secret_word", re.I)
ROOT = Path(bastion.__file__).parent


def _classes() -> list[type]:
    found: list[type] = []
    for info in pkgutil.walk_packages([str(ROOT)], prefix="bastion."):
        if ".migrations" in info.name:
            continue
        module = importlib.import_module(info.name)
        found += [
            obj for _, obj in inspect.getmembers(module, inspect.isclass)
            if obj.__module__ == module.__name__ and issubclass(obj, FlaskForm | BaseModel)
        ]
    return found


@pytest.mark.asvs("V6.4.2")
def test_no_form_or_schema_asks_for_a_hint_or_a_security_question() -> None:
    classes = _classes()
    assert any(issubclass(c, FlaskForm) for c in classes) and any(
        issubclass(c, BaseModel) for c in classes
    ), "the scan must see the forms and the API schemas"
    offenders = []
    for cls in classes:
        names = (
            list(cls.model_fields) if issubclass(cls, BaseModel)
            else [n for n, v in vars(cls).items() if hasattr(v, "field_class")]
        )
        offenders += [f"{cls.__name__}.{n}" for n in names if KNOWLEDGE.search(n)]
    assert offenders == []


@pytest.mark.asvs("V6.4.2")
def test_no_model_stores_a_hint_or_an_answer() -> None:
    from bastion.models import Base

    columns = [f"{t.name}.{c.name}" for t in Base.metadata.sorted_tables for c in t.columns]
    assert [c for c in columns if KNOWLEDGE.search(c.split(".", 1)[1])] == []
    doc = (ROOT.parent / "docs" / "authentication.md").read_text()
    assert "no password hints or security questions" in doc
