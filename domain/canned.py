"""Placeholders of canned responses: a fixed set of names between double braces, replaced
by plain text. Nothing else is interpreted (no expressions, filters or code).

    >>> unknown("Hi {{ contact.name }}, {{agent.name}} here. {{ contact.shoe }}", {"plan"})
    ['contact.shoe']
    >>> fill("Hi {{contact.name}}, on {{contact.attributes.plan}}", {"contact.name": "Ada"})
    ('Hi Ada, on ', ['contact.attributes.plan'])
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# {{ name }}: letters, digits, dots and underscores; spaces inside the braces are allowed.
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]{0,100}?)\s*\}\}")
FIXED = ("contact.name", "contact.email", "contact.phone", "agent.name", "agent.email")
ATTRIBUTE_PREFIX = "contact.attributes."


def placeholders(body: str) -> list[str]:
    """The placeholder names in a body, in order, each once."""
    return list(dict.fromkeys(m.group(1) for m in PLACEHOLDER.finditer(body)))


def unknown(body: str, attribute_keys: Iterable[str]) -> list[str]:
    """The placeholders that name nothing: not a fixed name, nor a custom attribute of the
    workspace (`contact.attributes.<key>`)."""
    known = {*FIXED, *(ATTRIBUTE_PREFIX + key for key in attribute_keys)}
    return [name for name in placeholders(body) if name not in known]


def fill(body: str, values: Mapping[str, str | None]) -> tuple[str, list[str]]:
    """The body with each placeholder replaced by its value, and the names that had none
    (replaced by nothing, for the agent to fill in)."""
    missing: list[str] = []

    def value(match: re.Match[str]) -> str:
        found = values.get(match.group(1))
        if found is None or found == "":
            if match.group(1) not in missing:
                missing.append(match.group(1))
            return ""
        return found

    return PLACEHOLDER.sub(value, body), missing
