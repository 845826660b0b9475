"""Masking: audit hints, and card numbers in message text (known test cards written every
way people write them, what must be left alone, and properties over generated cards)."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain.masking import CARD_MASK, contains_card_number, mask_card_numbers, mask_email, mask_name, mask_phone

TEST_CARDS = {
    "visa": "4111111111111111",
    "visa 2": "4012888888881881",
    "visa 13 digits": "4222222222222",
    "mastercard": "5555555555554444",
    "amex": "378282246310005",
    "diners": "30569309025904",
    "maestro 19 digits": "6304000000000000000",
}


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def with_check_digit(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def digit_runs(text: str) -> list[str]:
    """The digits of each chain of digit groups in `text`, separators removed."""
    return [re.sub("[^0-9]", "", run) for run in re.findall("[0-9]+(?:(?:[ \u00a0.-]|[ \u00a0]?\r?\n)[0-9]+)*", text)]


def has_date(text: str) -> bool:
    """A date written as the masker knows them (2026-03-29, 29.03.2026): never a card."""
    month, day = "(?:0[1-9]|1[0-2])", "(?:0[1-9]|[12][0-9]|3[01])"
    return (
        re.search(f"(?<![0-9])(?:[0-9]{{4}}([.-]){month}\\1{day}|{day}([.-]){month}\\2[0-9]{{4}})(?![0-9])", text)
        is not None
    )


# -- audit hints ----------------------------------------------------------------------------


def test_audit_hints() -> None:
    assert mask_email("jane.doe@example.com") == "j***@e***.com"
    assert mask_email("root@localhost") == "r***@l***"
    assert mask_email("not an address") is None
    assert mask_phone("+442071838750") == "+44*******750"
    assert mask_phone("+123") == "+***"
    assert mask_name("  ") is None


# -- card numbers ---------------------------------------------------------------------------


def test_the_reference_luhn_accepts_the_test_cards() -> None:
    assert all(luhn_valid(card) for card in TEST_CARDS.values())


@pytest.mark.parametrize("card", TEST_CARDS.values(), ids=TEST_CARDS.keys())
def test_a_test_card_is_masked_however_it_is_written(card: str) -> None:
    masked = CARD_MASK + card[-4:]
    fours = " ".join(card[i : i + 4] for i in range(0, len(card), 4))
    halves = fours[: len(fours) // 2].rstrip() + "\n" + fours[len(fours) // 2 :].lstrip()
    variants = (
        card,
        fours,
        fours.replace(" ", "-"),
        fours.replace(" ", "\u00a0"),
        fours.replace(" ", "."),
        halves,
        halves.replace("\n", "\r\n"),
        card[:7] + "\n" + card[7:],
    )
    for written in variants:
        assert mask_card_numbers(written) == masked
        assert mask_card_numbers(f"my card: {written}, thanks") == f"my card: {masked}, thanks"
        assert contains_card_number(f"x{written}x")


def test_the_mask_is_fixed_whatever_the_length() -> None:
    assert mask_card_numbers("378282246310005") == "**** **** **** 0005"
    assert mask_card_numbers("3782 822463 10005") == "**** **** **** 0005"
    assert mask_card_numbers("6304000000000000000") == "**** **** **** 0000"


def test_cards_inside_words_and_punctuation() -> None:
    assert mask_card_numbers("card:4111111111111111.") == "card:**** **** **** 1111."
    assert mask_card_numbers("(5555-5555-5555-4444)") == "(**** **** **** 4444)"
    assert mask_card_numbers("pay4012888888881881now") == "pay**** **** **** 1881now"


def test_several_cards() -> None:
    text = "Visa 4111 1111 1111 1111 or Amex 378282246310005; old one 5555-5555-5555-4444."
    assert mask_card_numbers(text) == (
        "Visa **** **** **** 1111 or Amex **** **** **** 0005; old one **** **** **** 4444."
    )


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112",  # fails Luhn
        "4111 1111 1111 1112",
        "ticket 1234567890123",
        "Call me on +1 415 555 0100 or +44 20 7183 8750",
        "+4222222222222 and +378282246310005",  # E.164 phone numbers that pass Luhn
        "On 2026-03-29 at 10:30, and 29/03/2026",
        "From 2026-03-29 2026-04-15, or 29.03.2026 15.04.2026",  # dates passing Luhn together
        "2026.03.29\n2026.04.15",
        "IBAN PT50000201231234567890154",  # 23 digits together: too long to be a card
        "4111 1111 1111 111",  # 15 digits, fails Luhn
        "4111  1111  1111  1111",  # double spaces: not one number
        "4111--1111--1111--1111",
        "4111..1111..1111..1111",
        "4111 1111\n\n1111 1111",  # a blank line between: two numbers
        "411111111111",  # 12 digits: too short even though it passes Luhn
        "",
    ],
)
def test_what_is_not_a_card_is_left_alone(text: str) -> None:
    assert mask_card_numbers(text) == text
    assert not contains_card_number(text)


def test_a_longer_run_of_digits_is_not_a_card() -> None:
    # 4111111111111111 inside 25 digits written together: not a card, and left whole
    # rather than partly masked.
    text = "ref 4111111111111111000000000 ok"
    assert mask_card_numbers(text) == text
    assert mask_card_numbers("1" * 20 + "4111111111111111") == "1" * 20 + "4111111111111111"


def test_a_card_in_a_longer_chain_of_groups_is_still_found() -> None:
    assert mask_card_numbers("4111 1111 1111 1111 123") == "**** **** **** 1111 123"
    assert mask_card_numbers("qty 3 4111-1111-1111-1111") == "qty 3 **** **** **** 1111"


def test_the_output_has_no_digits_of_a_card_but_the_last_four() -> None:
    for card in TEST_CARDS.values():
        out = mask_card_numbers(f"number {card} end")
        assert re.sub("[^0-9]", "", out) == card[-4:]


def test_big_inputs_are_handled_in_one_pass() -> None:
    rng = random.Random(7)
    noise = "".join(rng.choice("0123456789 -") for _ in range(64 * 1024))
    assert CARD_MASK in mask_card_numbers(noise)
    singles = " ".join(rng.choice("0123456789") for _ in range(32 * 1024))
    assert len(mask_card_numbers(singles)) <= len(singles)
    assert mask_card_numbers("7" * 64 * 1024) == "7" * 64 * 1024
    assert mask_card_numbers("1 " * 32 * 1024) == "1 " * 32 * 1024
    cards = "4111-1111-1111-1111 " * 3000
    assert "4111" not in mask_card_numbers(cards)


# -- properties -----------------------------------------------------------------------------

luhn_cards = st.integers(12, 18).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n)).map(with_check_digit)
# Surrounding text without ASCII digits: a digit touching the card would make it a
# different, longer number.
no_digits = st.text(st.characters(blacklist_characters="0123456789", blacklist_categories=("Cs",)), max_size=40)


@st.composite
def written_cards(draw: st.DrawFn) -> tuple[str, str]:
    """A Luhn-valid number and the way it was written: a single space, no-break space or
    dash, or nothing, between any two digits."""
    card = draw(luhn_cards)
    separators = draw(
        st.lists(
            st.sampled_from(["", "", "", " ", "-", "\u00a0", ".", "\n", "\r\n", " \n"]),
            min_size=len(card) - 1,
            max_size=len(card) - 1,
        )
    )
    return card, card[0] + "".join(sep + digit for sep, digit in zip(separators, card[1:], strict=True))


@given(written_cards(), no_digits, no_digits)
def test_a_card_never_survives(written: tuple[str, str], before: str, after: str) -> None:
    card, text = written
    assume(not has_date(text) and not (before.endswith("+") and len(card) <= 15))
    out = mask_card_numbers(before + text + after)
    assert text not in out
    digits = re.sub("[^0-9]", "", out)
    assert card not in digits
    assert digits == card[-4:]
    assert out.startswith(before) and out.endswith(CARD_MASK + card[-4:] + after)
    assert contains_card_number(before + text + after)


@given(
    written_cards(),
    st.lists(st.text("0123456789", min_size=1, max_size=4), max_size=3),
    st.lists(st.text("0123456789", min_size=1, max_size=4), max_size=3),
)
def test_a_card_among_other_digit_groups_never_survives(
    written: tuple[str, str], before: list[str], after: list[str]
) -> None:
    _, text = written
    assume(not has_date(" ".join([*before, text, *after])))
    card = re.sub("[^0-9]", "", text)
    out = mask_card_numbers(" ".join([*before, text, *after]))
    assert all(card not in run for run in digit_runs(out))


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_masking_changes_only_cards(text: str) -> None:
    out = mask_card_numbers(text)
    assert (out != text) == contains_card_number(text)
    assert len(re.sub("[^0-9]", "", out)) <= len(re.sub("[^0-9]", "", text))


def test_a_hostile_megabyte_is_masked_quickly() -> None:
    import time

    for hostile in ("1 " * 500_000, "1.\n" * 330_000, "4111-1111-1111-1111." * 50_000, "2026-03-29 " * 90_000):
        started = time.perf_counter()
        mask_card_numbers(hostile)
        assert time.perf_counter() - started < 10


@given(st.sampled_from(["+1", "+44", "+33", "+49"]), st.text("0123456789", min_size=8, max_size=12))
def test_a_phone_number_in_e164_is_left_alone(country: str, number: str) -> None:
    phone = country + number
    assume(len(phone) - 1 <= 15)
    assert mask_card_numbers(f"call {phone} today") == f"call {phone} today"


@given(
    st.integers(1900, 2100),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(1900, 2100),
    st.integers(1, 12),
    st.integers(1, 28),
    st.sampled_from(["-", "."]),
)
def test_two_dates_together_are_left_alone(y1: int, m1: int, d1: int, y2: int, m2: int, d2: int, sep: str) -> None:
    iso = f"{y1}{sep}{m1:02}{sep}{d1:02} {y2}{sep}{m2:02}{sep}{d2:02}"
    european = f"{d1:02}{sep}{m1:02}{sep}{y1} {d2:02}{sep}{m2:02}{sep}{y2}"
    assert mask_card_numbers(iso) == iso
    assert mask_card_numbers(european) == european
