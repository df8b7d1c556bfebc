"""enqueue_batch's encoding: the one-encode fast path for flat dicts gives exactly what
encoding item by item gives, and hands every other batch to the per-item path."""

from __future__ import annotations

from typing import Any

import pytest

from pgqueue.errors import InvalidJobError
from pgqueue.jobspec import _checked_dumps, _encode_flat_dicts, encode_items

BATCHES: list[list[Any]] = [
    [{"i": n} for n in range(50)],
    [{}, {}, {"a": None}],
    [{"s": "},{"}, {"s": "x"}],  # the separator inside a string: not split there
    [{"s": '"},{"'}, {"t": "\\},{\\"}],
    [{"u": "üñí 😀", "f": 1.5, "b": True, "n": None}, {"k": -(2**70)}],
    [{"a": 1, "b": "2"}, {"b": 2, "a": "1"}],
]


@pytest.mark.parametrize("batch", BATCHES)
def test_fast_path_matches_encoding_item_by_item(batch: list[Any]) -> None:
    expected = [("[]", _checked_dumps(item)) for item in batch]
    fast = _encode_flat_dicts(batch)
    assert fast is None or fast == expected
    assert encode_items("t", batch) == expected


@pytest.mark.parametrize(
    "batch",
    [
        [{"a": {"nested": 1}}, {"a": 1}],  # containers: checked item by item
        [{"a": [1]}, {"a": 1}],
        [{1: "x"}, {"a": 1}],  # a non-string key
        [{"a": float("nan")}, {"a": 1}],
        [{"a": "nul\x00"}, {"a": 1}],
        [{"s": "},{"}, {"s": "},{"}],  # more separators than boundaries
        [{"a": 1}],  # one item
        [{"a": 1}, [1, 2]],  # not all dicts
    ],
)
def test_other_batches_take_the_per_item_path(batch: list[Any]) -> None:
    assert _encode_flat_dicts(batch) is None


def test_bad_items_are_still_named() -> None:
    with pytest.raises(InvalidJobError, match="item 1 of the batch"):
        encode_items("t", [{"a": 1}, {1: "x"}])
    with pytest.raises(InvalidJobError, match="item 0 of the batch"):
        encode_items("t", [{"a": float("nan")}, {"a": 1}])
    with pytest.raises(InvalidJobError, match="item 1 of the batch"):
        encode_items("t", ({"a": n} if n != 1 else {"a": "\x00"} for n in range(3)))
