from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from widget_server.reports import ratio, shares


def test_half_up_to_a_tenth() -> None:
    assert ratio(28, 40) == Decimal("70.0")
    assert ratio(1, 8) == Decimal("12.5")
    assert ratio(1, 16) == Decimal("6.3")  # 6.25 → 6.3: half up, not to even
    assert ratio(1, 0) is None


def test_thirds_sum_to_a_hundred_by_largest_remainder() -> None:
    assert shares([1, 1, 1]) == [Decimal("33.4"), Decimal("33.3"), Decimal("33.3")]
    assert shares([0, 0]) == [Decimal("0.0"), Decimal("0.0")]


def test_half_up_is_kept_when_it_already_sums() -> None:
    assert shares([1, 7]) == [Decimal("12.5"), Decimal("87.5")]
    # 6.25 and 93.75 both round up to 100.1: the largest remainders tie, so the earlier part gets the tenth.
    assert shares([1, 15]) == [Decimal("6.3"), Decimal("93.7")]
    assert shares([2, 1]) == [Decimal("66.7"), Decimal("33.3")]


@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=30))
def test_parts_always_sum_to_the_total(counts: list[int]) -> None:
    parts = shares(counts)
    assert sum(parts) == (Decimal("100.0") if sum(counts) else Decimal("0.0"))
    for count, part in zip(counts, parts, strict=True):
        exact = Decimal(count * 100) / Decimal(sum(counts) or 1)
        assert abs(part - exact) < Decimal("0.1")
