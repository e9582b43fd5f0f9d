"""kgmm.utils.batched: slices of a sequence's own type, lists from any other iterable, a clear error for size 0."""

from __future__ import annotations

import pytest

from kgmm.utils import batched


def test_a_sequence_is_cut_into_slices_of_its_own_type():
    assert list(batched([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert list(batched((1, 2, 3), 2)) == [(1, 2), (3,)]
    assert list(batched([], 3)) == []


def test_a_tensor_gives_tensor_slices():
    torch = pytest.importorskip("torch")
    parts = list(batched(torch.arange(5), 2))
    assert [part.tolist() for part in parts] == [[0, 1], [2, 3], [4]]
    assert all(isinstance(part, torch.Tensor) for part in parts)


def test_any_other_iterable_is_read_lazily_into_lists():
    read = []

    def numbers():
        for number in range(5):
            read.append(number)
            yield number

    batches = batched(numbers(), 2)
    assert next(batches) == [0, 1] and read == [0, 1]
    assert list(batches) == [[2, 3], [4]]
    assert list(batched({"a": 1, "b": 2, "c": 3}, 2)) == [["a", "b"], ["c"]]


def test_a_size_below_one_is_refused():
    with pytest.raises(ValueError, match="batch size must be >= 1"):
        list(batched([1], 0))
