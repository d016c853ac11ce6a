"""Percentages to one decimal place, rounded half up, whose parts add up to exactly 100.0.

Rule (documented for the reports' readers): every part is its exact share rounded half up to 0.1 %. When
those rounded parts do not add up to 100.0 (three equal thirds: 33.3 × 3 = 99.9), the tenths are handed out
by the largest remainder instead: each part gets its share rounded down to 0.1, and the tenths still
missing go one each to the parts with the largest remainders, earlier parts first on a tie. Whenever plain
half-up rounding already sums to 100.0 the two give the same figures, so the rule only ever moves a part by
one tenth, and only when it has to.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

__all__ = ["ratio", "shares"]

_TENTH = Decimal("0.1")


def ratio(numerator: int, denominator: int) -> Decimal | None:
    """numerator ÷ denominator as a percentage half up to 0.1; None when there is nothing to divide by."""
    if denominator == 0:
        return None
    return (Decimal(numerator) * 100 / Decimal(denominator)).quantize(_TENTH, rounding=ROUND_HALF_UP)


def shares(counts: Sequence[int]) -> list[Decimal]:
    """Each count's share of their sum, in percent to 0.1, summing to exactly 100.0 (all zero: all 0.0)."""
    total = sum(counts)
    if total == 0:
        return [Decimal("0.0") for _ in counts]
    exact = [Fraction(c * 1000, total) for c in counts]
    half_up = [int(x + Fraction(1, 2)) for x in exact]
    if sum(half_up) == 1000:
        tenths = half_up
    else:
        tenths = [int(x) for x in exact]
        missing = 1000 - sum(tenths)
        order = sorted(range(len(counts)), key=lambda i: (-(exact[i] - tenths[i]), i))
        for i in order[:missing]:
            tenths[i] += 1
    return [Decimal(t).scaleb(-1).quantize(_TENTH) for t in tenths]
