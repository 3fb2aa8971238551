"""Every topic record's JSON (``_TopicRecord.to_json``, a dict built per class) is the bytes
orjson gives for the dataclass itself with ``"kind"`` first, NaN as null."""

from __future__ import annotations

import dataclasses
import math

import orjson
import pytest

from justwalk import records

RECORDS = [getattr(records, c.__name__) for c in records._TopicRecord.__subclasses__()]
RECORDS = list(dict.fromkeys(RECORDS))  # the slotted classes the module exports
VALUES = {
    "str": ["clinic-1", "pt-\u00e9"],
    "str | None": ["right", None],
    "int": [1_750_000_000_000_123, -3],
    "int | None": [2**53 + 1, None],
    "float": [0.1 + 0.2, math.nan],
    "float | None": [1e-300, None],
    "bool": [True, False],
    "bool | None": [False, None],
    "dict[str, float]": [{"a": 1.5, "b": -0.0}, {}],
    "dict[str, float | None]": [{"a": None, "b": math.inf}, {}],
    "dict[str, float | str]": [{"a": 2.0, "b": "x"}, {}],
    "dict[str, Any]": [{"a": [1, {"b": None}], "c": math.nan}, {}],
    "list[dict[str, Any]]": [[{"a": 1}, {"b": [2.5, None]}], []],
}


def _reference(r: records._TopicRecord) -> bytes:
    """The serialisation this replaced: orjson on the dataclass, ``"kind"`` spliced first."""
    return b'{"kind":' + orjson.dumps(r.KIND) + b"," + orjson.dumps(r)[1:]


def test_every_record_class_is_covered():
    assert {c.__name__ for c in RECORDS} >= {"StepRecord", "GaitWindowRecord", "BoutRecord",
                                             "AlertRecord", "FeedbackRecord"}
    for c in RECORDS:
        for f in dataclasses.fields(c):
            assert str(f.type) in VALUES, (c.__name__, f.name, f.type)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("variant", [0, 1])
def test_to_json_is_the_dataclass_s_json_with_its_kind_first(cls, variant):
    r = cls(**{f.name: VALUES[str(f.type)][variant] for f in dataclasses.fields(cls)})
    data = r.to_json()
    assert data == _reference(r)
    assert r.to_json() == data  # the per-class maker, once built
    d = orjson.loads(data)
    assert next(iter(d)) == "kind" and d["kind"] == cls.KIND
    assert list(d)[1:] == [f.name for f in dataclasses.fields(cls)]
