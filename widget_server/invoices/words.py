"""Amounts in words (сумма прописью): «Сто двадцать три тысячи четыреста пятьдесят шесть рублей 78 копеек».

num2words spells the integer part only. Its `to="currency"` mode has two traps (research/ecosystem.md §4):
an int is read as minor units (1234 → «двенадцать рублей, тридцать четыре копейки») and a float loses
kopecks (1.005 → «ноль копеек»). So this module takes a Decimal with at most the currency's minor digits,
spells `int(amount)` as a cardinal, chooses the currency word with num2words' own `pluralize`, and prints
the minor units as two digits, as Russian invoices do.
"""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import get_currency_precision
from num2words import num2words
from num2words.lang_EN import Num2Word_EN
from num2words.lang_RU import Num2Word_RU

__all__ = ["amount_in_words"]

_RU = Num2Word_RU()
_EN = Num2Word_EN()

# num2words' Russian converter knows only a handful of currencies; these add the rest we invoice in.
_RU_EXTRA: dict[str, tuple[tuple[str, str, str], tuple[str, str, str]]] = {
    "GBP": (("фунт стерлингов", "фунта стерлингов", "фунтов стерлингов"), ("пенс", "пенса", "пенсов")),
    "CHF": (
        ("швейцарский франк", "швейцарских франка", "швейцарских франков"),
        ("сантим", "сантима", "сантимов"),
    ),
    "CNY": (("юань", "юаня", "юаней"), ("фэнь", "фэня", "фэней")),
    "TRY": (("турецкая лира", "турецкие лиры", "турецких лир"), ("куруш", "куруша", "курушей")),
    "AED": (("дирхам ОАЭ", "дирхама ОАЭ", "дирхамов ОАЭ"), ("филс", "филса", "филсов")),
}


def _split(amount: Decimal, currency: str) -> tuple[int, int]:
    if not isinstance(amount, Decimal):
        raise TypeError(f"amount must be a Decimal, not {type(amount).__name__}: ints and floats mis-spell")
    if amount < 0 or not amount.is_finite():
        raise ValueError(f"amount must be a non-negative finite Decimal, got {amount}")
    digits = get_currency_precision(currency)
    minor = amount.scaleb(digits)
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} has more than {digits} decimals for {currency}: round it first")
    whole, fraction = divmod(int(minor), 10**digits)
    return whole, fraction


def _ru(whole: int, fraction: int, currency: str) -> str:
    forms = _RU_EXTRA.get(currency) or _RU.CURRENCY_FORMS.get(currency)
    if forms is None:
        raise ValueError(f"no Russian currency words for {currency}")
    major, minor = forms
    feminine = currency in {"TRY"}
    words = num2words(whole, lang="ru", gender="f") if feminine and whole else num2words(whole, lang="ru")
    text = f"{words} {_RU.pluralize(whole, major)} {fraction:02d} {_RU.pluralize(fraction, minor)}"
    return text[0].upper() + text[1:]


def _en(whole: int, fraction: int, currency: str) -> str:
    forms = _EN.CURRENCY_FORMS.get(currency)
    if forms is None:
        raise ValueError(f"no English currency words for {currency}")
    major, minor = forms
    words = num2words(whole, lang="en")
    text = f"{words} {_EN.pluralize(whole, major)} {fraction:02d} {_EN.pluralize(fraction, minor)}"
    return text[0].upper() + text[1:]


def amount_in_words(amount: Decimal, currency: str, language: str = "ru") -> str:
    """`Decimal("123456.78"), "RUB"` → «Сто двадцать три тысячи четыреста пятьдесят шесть рублей 78
    копеек». Only Decimal is accepted; `language` is "ru" or "en"."""
    whole, fraction = _split(amount, currency)
    if language == "ru":
        return _ru(whole, fraction, currency)
    if language == "en":
        return _en(whole, fraction, currency)
    raise ValueError(f"language must be 'ru' or 'en', got {language!r}")
