"""Masking, so that what we keep cannot be turned back into what a person gave us.

Hints for audit records: enough for an admin to recognise a contact, never enough to
recover its data.

    >>> mask_email("jane.doe@example.com")
    'j***@e***.com'
    >>> mask_phone("+442071838750")
    '+44*******750'
    >>> mask_name("Jane Doe")
    'J*** D***'

Card numbers in every free text a contact, an agent or an integrator writes (messages,
subjects, notes, attribute values, event properties, page titles and URLs, synced rows),
masked before the text is stored, published or logged: each becomes
`CARD_MASK` followed by its last four digits, whatever its length and spacing.

    >>> mask_card_numbers("My card is 4111 1111 1111 1111, order 1234567890123.")
    'My card is **** **** **** 1111, order 1234567890123.'
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any


def mask_email(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    local, _, domain = email.partition("@")
    host, dot, tld = domain.rpartition(".")
    if not dot:
        host, tld = domain, ""
    return f"{local[:1]}***@{host[:1]}***{dot}{tld}"


def mask_phone(phone: str | None) -> str | None:
    if not phone:
        return None
    digits = phone.lstrip("+")
    if len(digits) <= 5:
        return "+" + "*" * len(digits)
    return "+" + digits[:2] + "*" * (len(digits) - 5) + digits[-3:]


def mask_name(name: str | None) -> str | None:
    if not name or not name.strip():
        return None
    return " ".join(f"{word[:1]}***" for word in name.split()[:3])


# -- card numbers ---------------------------------------------------------------------------

CARD_MASK = "**** **** **** "
"""What replaces a card number, before its last four digits: always these 15 characters,
so the mask tells nothing of the card's length or how it was written."""

# Groups of digits joined by one space, no-break space, dash or dot, or by a line break
# (a number wrapped over two lines): the ways people write a card number
# ("4111 1111 1111 1111", "4111-1111-1111-1111", "4111.1111.1111.1111"). Each repetition
# starts with a separator and ends with a digit, so there is one way to match and no
# backtracking: the scan is linear in the text's length.
_SEPARATOR = "(?:[ \u00a0.-]|[ \u00a0]?\r?\n)"
_DIGIT_RUN = re.compile(f"[0-9]+(?:{_SEPARATOR}[0-9]+)*")
_GROUP = re.compile("[0-9]+")
_MIN_DIGITS, _MAX_DIGITS = 13, 19
# A phone number in E.164 ("+" then at most 15 digits) is not a card.
_E164_MAX_DIGITS = 15
_MONTHS = frozenset(f"{m:02}" for m in range(1, 13))
_DAYS = frozenset(f"{d:02}" for d in range(1, 32))
# Luhn doubles every second digit from the right and adds the digits of the product.
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def mask_card_numbers(text: str) -> str:
    """Replace every card number in `text` by `CARD_MASK` and its last four digits.

    A card number is 13 to 19 digits that pass the Luhn check, written together or in
    groups joined by single spaces, no-break spaces, dashes or dots, or by a line break
    (a number wrapped over two lines), anywhere in the text ("card:4111111111111111." is
    found). Everything else is left as it is:

    * digits that fail the Luhn check (order numbers, most phone numbers);
    * a phone number in E.164 ("+" then at most 15 digits), even one passing Luhn; a
      phone number written otherwise that passes it is masked: we would rather hide a
      phone number than show a card;
    * dates (2026-03-29, 29.03.2026): digits holding one are never a card, so two dates
      side by side are not masked;
    * a run of more than 19 digits written together (an IBAN, a tracking number) is not a
      card and is left whole: masking part of it could not tell where a card would start,
      and might leave a real number half visible;
    * in a longer chain of groups, every stretch of whole groups that makes a card is
      masked, so a card followed by its security code ("4111 1111 1111 1111 123") or
      preceded by a quantity is still caught. Stretches that overlap are masked as one,
      keeping the last four digits of the last.

        >>> mask_card_numbers("Amex 3782-822463-10005 and Visa 4012888888881881!")
        'Amex **** **** **** 0005 and Visa **** **** **** 1881!'
        >>> mask_card_numbers("Call +1 415 555 0100 about order 4111111111111112")
        'Call +1 415 555 0100 about order 4111111111111112'
        >>> mask_card_numbers("4111.1111.1111.1111, or 4111 1111\\n1111 1111")
        '**** **** **** 1111, or **** **** **** 1111'
    """
    spans = list(_card_spans(text))
    if not spans:
        return text
    out, last = [], 0
    for start, end, tail in spans:
        out += [text[last:start], CARD_MASK, tail]
        last = end
    out.append(text[last:])
    return "".join(out)


def mask_card_numbers_in(value: Any) -> Any:
    """`value` (JSON: text, numbers, lists, objects) with every card number masked, in
    keys and in text values alike; numbers and booleans are kept as they are.

        >>> mask_card_numbers_in({"note": "4111-1111-1111-1111", "qty": 2, "tags": ["a"]})
        {'note': '**** **** **** 1111', 'qty': 2, 'tags': ['a']}
    """
    if isinstance(value, str):
        return mask_card_numbers(value)
    if isinstance(value, dict):
        return {mask_card_numbers(str(k)): mask_card_numbers_in(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_card_numbers_in(v) for v in value]
    return value


def contains_card_number(text: str) -> bool:
    """Whether `mask_card_numbers` would mask anything in `text`.

    >>> contains_card_number("4111-1111-1111-1111"), contains_card_number("4111-1111-1111-1112")
    (True, False)
    """
    return next(_card_spans(text), None) is not None


def _card_spans(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, last four digits) of each stretch of `text` to mask, in order."""
    for run in _DIGIT_RUN.finditer(text):
        if run.end() - run.start() < _MIN_DIGITS:
            continue
        groups = [(g.start(), g.end()) for g in _GROUP.finditer(text, run.start(), run.end())]
        digits = "".join(text[s:e] for s, e in groups)
        # bounds[k] is the index in `digits` where group k starts; bounds[-1] == len(digits).
        bounds = [0]
        for s, e in groups:
            bounds.append(bounds[-1] + e - s)
        # dates[k]: how many dates start before group k (a window holding one is no card).
        dates = [0]
        for k in range(len(groups)):
            dates.append(dates[-1] + _is_date(text, groups, k))
        phone = run.start() > 0 and text[run.start() - 1] == "+"
        luhn = _LuhnSums(digits)
        merged: tuple[int, int] | None = None  # first and last group of the stretch
        for first in range(len(groups)):
            if merged is not None and first > merged[1]:
                yield _span(text, groups, digits, bounds, *merged)
                merged = None
            # Windows of whole groups, first..last, holding 13 to 19 digits.
            after = bisect_left(bounds, bounds[first] + _MIN_DIGITS)
            while after < len(bounds) and bounds[after] - bounds[first] <= _MAX_DIGITS:
                # A date starting at group k spans groups k..k+2.
                if dates[max(first, after - 2)] > dates[first]:
                    break  # every longer window holds the date too
                e164 = first == 0 and phone and bounds[after] <= _E164_MAX_DIGITS
                if not e164 and luhn.valid(bounds[first], bounds[after]):
                    last = after - 1
                    merged = (first, last) if merged is None else (merged[0], max(merged[1], last))
                after += 1
        if merged is not None:
            yield _span(text, groups, digits, bounds, *merged)


def _is_date(text: str, groups: list[tuple[int, int]], k: int) -> bool:
    """Whether groups k, k+1, k+2 are a date: 2026-03-29, 29.03.2026 (one separator, twice)."""
    if k + 2 >= len(groups):
        return False
    (s0, e0), (s1, e1), (s2, e2) = groups[k : k + 3]
    sep = text[e0:s1]
    if sep not in ("-", ".") or text[e1:s2] != sep:
        return False
    a, b, c = text[s0:e0], text[s1:e1], text[s2:e2]
    if len(a) == 4 and b in _MONTHS and c in _DAYS:
        return True
    return len(c) == 4 and b in _MONTHS and a in _DAYS


def _span(
    text: str, groups: list[tuple[int, int]], digits: str, bounds: list[int], first: int, last: int
) -> tuple[int, int, str]:
    end_digit = bounds[last + 1]
    return groups[first][0], groups[last][1], digits[end_digit - 4 : end_digit]


class _LuhnSums:
    """The Luhn check of any slice of a digit string in constant time, from two running
    sums: one for the slices whose last digit has an even index, one for odd."""

    def __init__(self, digits: str) -> None:
        self._sums: tuple[list[int], list[int]] = ([0], [0])
        for index, char in enumerate(digits):
            value = ord(char) - 48
            for parity, sums in enumerate(self._sums):
                # The last digit of the slice is never doubled, nor any at an even distance.
                sums.append(sums[-1] + (value if index % 2 == parity else _DOUBLED[value]))

    def valid(self, start: int, end: int) -> bool:
        sums = self._sums[(end - 1) % 2]
        return (sums[end] - sums[start]) % 10 == 0
