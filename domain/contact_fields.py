"""Validation and normalisation of contact fields and custom attribute values.

Each function returns the normalised value or raises ValueError with a message fit for
a user.

    >>> normalize_phone("+44 20 7183 8750")
    '+442071838750'
    >>> coerce_attribute("number", [], "12.5")
    Traceback (most recent call last):
    ...
    ValueError: expected a number, got text
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from domain.masking import mask_card_numbers

_TIME_ZONES = available_timezones()
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
ATTRIBUTE_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_TEXT = 1000


def camel(name: str) -> str:
    """A column's name as the API spells it.

    >>> camel("gdpr_consent_at")
    'gdprConsentAt'
    """
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def normalize_email(value: str) -> str:
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid e-mail address: {exc}") from None
    return result.normalized.lower()


def normalize_phone(value: str, region: str | None = None) -> str:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number; use the international format, e.g. +14155550100") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_country(value: str) -> str:
    code = value.strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", code):
        raise ValueError("expected an ISO 3166-1 alpha-2 country code, e.g. PT")
    return code


def normalize_time_zone(value: str) -> str:
    if value not in _TIME_ZONES:
        raise ValueError("not an IANA time zone, e.g. Europe/Lisbon")
    ZoneInfo(value)
    return value


def normalize_locale(value: str) -> str:
    if not _LOCALE.match(value.strip()):
        raise ValueError("not a language tag, e.g. pt-BR")
    return value.strip().replace("_", "-")


def normalize_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError("not an IP address") from None


def normalize_text(value: str, max_length: int) -> str:
    text = value.strip()
    if len(text) > max_length:
        raise ValueError(f"at most {max_length} characters")
    return text


def normalize_free_text(value: str, max_length: int) -> str:
    """Text a person typed (a name, a city): trimmed, bounded, card numbers masked."""
    return mask_card_numbers(normalize_text(value, max_length))


def coerce_attribute(kind: str, options: list[str], value: Any) -> Any:
    """A custom attribute value, checked against its definition's type. None clears it."""
    if value is None:
        return None
    if kind == "text":
        if not isinstance(value, str):
            raise ValueError(f"expected text, got {type_name(value)}")
        if len(value) > MAX_TEXT:
            raise ValueError(f"at most {MAX_TEXT} characters")
        return mask_card_numbers(value)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {type_name(value)}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("expected a finite number")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {type_name(value)}")
        return value
    if kind == "date":
        if not isinstance(value, str):
            raise ValueError(f"expected a date as YYYY-MM-DD, got {type_name(value)}")
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError("expected a date as YYYY-MM-DD") from None
    if kind == "list":
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value
    raise ValueError(f"unknown attribute type {kind}")


def type_name(value: Any) -> str:
    """How a JSON value's type reads in an error message: 'a number', 'text', …"""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
