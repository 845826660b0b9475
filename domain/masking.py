"""Masked hints for audit records: enough for an admin to recognise a contact, never
enough to recover its data.

    >>> mask_email("jane.doe@example.com")
    'j***@e***.com'
    >>> mask_phone("+442071838750")
    '+44*******750'
    >>> mask_name("Jane Doe")
    'J*** D***'
"""

from __future__ import annotations


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
