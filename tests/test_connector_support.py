"""The record-mapping loop every connector shares (`support.map_page` / `map_record`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from edrtrial.connectors.base import Rejected
from edrtrial.connectors.support import map_page, map_record
from edrtrial.errors import EdrTrialError, Unmappable


class _Item(BaseModel):
    id: str | None = None
    size: int = 0


def _mapper(raw: Mapping[str, Any]) -> tuple[str, int]:
    item = _Item.model_validate(raw)
    if not item.id:
        raise Unmappable("no id")
    return item.id, item.size


def test_a_page_keeps_its_good_records_and_sets_the_others_aside(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong_type = {"id": "b", "size": "big"}
    items: list[Any] = [{"id": "a", "size": 1}, wrong_type, {"size": 3}, ["x"], {"id": "c"}]
    caplog.set_level(logging.WARNING)

    batch = map_page(items, _mapper, "widget", tenant="t-1")

    assert batch.records == [("a", 1), ("c", 0)]
    assert not batch.complete
    wrong, no_id, not_object = batch.rejected
    not_int = "size: Input should be a valid integer, unable to parse string as an integer"
    assert wrong == Rejected("widget", "b", not_int, wrong_type)
    assert no_id == Rejected("widget", "", "no id", {"size": 3})
    assert not_object == Rejected("widget", "", "not a JSON object (list)", {"value": "['x']"})
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"tenant t-1: set aside widget b: {not_int}",
        "tenant t-1: set aside widget: no id",
        "tenant t-1: set aside widget: not a JSON object (list)",
    ]


def test_the_rejected_id_comes_from_where_the_connector_says() -> None:
    items = [{"meta": {"key": 7}}, {"meta": {"key": {"nested": 1}}}]

    batch = map_page(
        items, _mapper, "widget", tenant="t-1", source_id=lambda raw: raw["meta"]["key"]
    )

    assert [r.source_id for r in batch.rejected] == ["7", ""]  # a table is no id


def test_one_record_raises_unmappable_with_the_validation_error_as_cause() -> None:
    assert map_record(_mapper, {"id": "a", "size": "2"}) == ("a", 2)
    with pytest.raises(Unmappable, match=r"^size: Input should be a valid integer") as caught:
        map_record(_mapper, {"id": "a", "size": "two"})
    assert isinstance(caught.value.__cause__, ValidationError)
    assert isinstance(caught.value, EdrTrialError)
    with pytest.raises(Unmappable) as not_object:
        map_record(_mapper, "a string")
    assert not_object.value.reason == "not a JSON object (str)"
