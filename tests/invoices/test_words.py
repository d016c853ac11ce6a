"""Amounts in words: the ru/en table from the issue, and num2words' int and float traps kept out."""

from __future__ import annotations

from decimal import Decimal

import pytest
from num2words import num2words

from widget_server.invoices.words import amount_in_words

RU_RUB = [
    ("0.01", "Ноль рублей 01 копейка"),
    ("1", "Один рубль 00 копеек"),
    ("2", "Два рубля 00 копеек"),
    ("5", "Пять рублей 00 копеек"),
    ("11", "Одиннадцать рублей 00 копеек"),
    ("21.21", "Двадцать один рубль 21 копейка"),
    ("101.02", "Сто один рубль 02 копейки"),
    ("111.11", "Сто одиннадцать рублей 11 копеек"),
    ("1000000", "Один миллион рублей 00 копеек"),
    ("123456.78", "Сто двадцать три тысячи четыреста пятьдесят шесть рублей 78 копеек"),
]

EN_EUR = [
    ("0.01", "Zero euro 01 cent"),
    ("1", "One euro 00 cents"),
    ("2", "Two euro 00 cents"),
    ("5", "Five euro 00 cents"),
    ("11", "Eleven euro 00 cents"),
    ("21.21", "Twenty-one euro 21 cents"),
    ("101.02", "One hundred and one euro 02 cents"),
    ("111.11", "One hundred and eleven euro 11 cents"),
    ("1000000", "One million euro 00 cents"),
]


@pytest.mark.parametrize(("amount", "words"), RU_RUB)
def test_russian_roubles(amount: str, words: str) -> None:
    assert amount_in_words(Decimal(amount), "RUB", "ru") == words


@pytest.mark.parametrize(("amount", "words"), EN_EUR)
def test_english_euro(amount: str, words: str) -> None:
    assert amount_in_words(Decimal(amount), "EUR", "en") == words


def test_other_currencies_in_russian() -> None:
    assert amount_in_words(Decimal("2.02"), "EUR", "ru") == "Два евро 02 цента"
    assert amount_in_words(Decimal("21"), "USD", "ru") == "Двадцать один доллар 00 центов"
    assert amount_in_words(Decimal("1.01"), "RUB", "en") == "One rouble 01 kopek"


def test_whole_thousands_are_not_read_as_kopecks() -> None:
    # num2words reads an int as minor units: 1234 → «двенадцать рублей, тридцать четыре копейки».
    assert "двенадцать" in num2words(1234, lang="ru", to="currency", currency="RUB")
    assert amount_in_words(Decimal("1234"), "RUB") == "Одна тысяча двести тридцать четыре рубля 00 копеек"


def test_ints_and_floats_are_refused() -> None:
    # A float loses the kopeck (1.005 → «ноль копеек»); an int means the wrong unit. Neither gets in.
    assert "ноль копеек" in num2words(1.005, lang="ru", to="currency", currency="RUB")
    with pytest.raises(TypeError):
        amount_in_words(1.005, "RUB")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        amount_in_words(1234, "RUB")  # type: ignore[arg-type]


def test_more_decimals_than_the_currency_has_is_refused() -> None:
    with pytest.raises(ValueError, match="round it first"):
        amount_in_words(Decimal("1.005"), "RUB")


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError):
        amount_in_words(Decimal("1"), "RUB", "de")
