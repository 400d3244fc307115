"""Every integer an API query string carries is bounded below what an over-long one reads as.

``bastion.api.schemas._query_int`` reads a number of more than ``QUERY_INT_DIGITS``
significant digits as ``10**QUERY_INT_DIGITS``, so that the field's own bound refuses it
with its own message. That holds only while every such bound is below that number: a field
bounded at it, or not at all, would take ``page=99999999999999999999`` as 1000000000.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

import pytest
from flask import Flask
from pydantic import BaseModel, Field

from bastion.api.schemas import QUERY_INT_DIGITS, ListQuery, PageQuery
from bastion.api.spec import operation_of

OVER_LONG = 10**QUERY_INT_DIGITS  # what ``_query_int`` reads an over-long number as


def _integers(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every integer schema in a JSON Schema, with where it stands."""
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "integer" or (isinstance(kind, list) and "integer" in kind):
            yield where, node
        for key, value in node.items():
            yield from _integers(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _integers(value, f"{where}/{i}")


def _not_bounded_below_over_long(model: type[BaseModel]) -> list[str]:
    """Where ``model`` takes an integer with no upper bound below ``OVER_LONG``."""
    found = []
    for where, schema in _integers(model.model_json_schema(mode="validation"), ""):
        highest = schema.get("maximum")
        if "exclusiveMaximum" in schema:
            highest = schema["exclusiveMaximum"] - 1
        if highest is None or highest >= OVER_LONG:
            found.append(f"{model.__name__}{where}")
    return found


def _query_models(app: Flask) -> set[type[BaseModel]]:
    """The models the app's API operations read their query strings with."""
    return {
        op.query
        for view in app.view_functions.values()
        if (op := operation_of(view)) is not None and op.query is not None
    }


@pytest.mark.asvs("V2.2.1")
def test_every_query_integer_is_bounded_below_what_an_over_long_number_reads_as(
    make_app: Callable[..., Flask],
) -> None:
    models = _query_models(make_app())

    assert {ListQuery, PageQuery} <= models
    assert [where for model in models for where in _not_bounded_below_over_long(model)] == []


class _AtOverLong(BaseModel):
    page: Annotated[int, Field(le=OVER_LONG)] = 1


class _Unbounded(BaseModel):
    page: int = 1


class _UnboundedOrNone(BaseModel):
    page: Annotated[int, Field(ge=1)] | None = None


class _ExclusivePast(BaseModel):
    page: Annotated[int, Field(lt=OVER_LONG + 1)] = 1


class _JustBelow(BaseModel):
    page: Annotated[int, Field(le=OVER_LONG - 1)] = 1
    size: Annotated[int, Field(lt=OVER_LONG)] | None = None


@pytest.mark.parametrize("model", [_AtOverLong, _Unbounded, _UnboundedOrNone, _ExclusivePast])
def test_the_check_finds_an_integer_bounded_at_what_an_over_long_number_reads_as_or_not_at_all(
    model: type[BaseModel],
) -> None:
    assert _not_bounded_below_over_long(model) != []


def test_the_check_passes_integers_bounded_just_below() -> None:
    assert _not_bounded_below_over_long(_JustBelow) == []
