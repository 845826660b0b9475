"""What Parley takes from a CRM lookup's answer (jobs/crm.py), as plain functions.

The CRM answers `{"attributes": {"plan": "gold", "seats": 12}}`. Only attributes the
workspace defined as CRM-managed are taken, each checked against its type; anything else
is ignored, and an answer that is not such an object (or too big) is refused whole.

    >>> answer = parse_answer(b'{"attributes": {"plan": "gold", "seats": "many", "x": 1}}')
    >>> clean_values(answer, {"plan": ("text", []), "seats": ("number", [])})
    Answer(values={'plan': 'gold'}, ignored=2)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.contact_fields import coerce_attribute

MAX_ANSWER_BYTES = 64 * 1024
MAX_ANSWER_ATTRIBUTES = 100


class AnswerRefused(ValueError):
    """The answer as a whole is unusable; the message is ours, never the CRM's text."""


@dataclass(frozen=True)
class Answer:
    values: dict[str, Any]  # CRM-managed attribute values, checked; None clears one
    ignored: int  # keys not CRM-managed, or values of the wrong type


def parse_answer(body: bytes, truncated: bool = False) -> dict[str, Any]:
    """The answer's `attributes` object, or AnswerRefused saying why not.

    >>> parse_answer(b'[1, 2]')
    Traceback (most recent call last):
    ...
    domain.crm.AnswerRefused: expected {"attributes": {...}}
    """
    if truncated:
        raise AnswerRefused(f"larger than {MAX_ANSWER_BYTES} bytes")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise AnswerRefused("not JSON") from None
    attributes = data.get("attributes") if isinstance(data, dict) else None
    if not isinstance(attributes, dict):
        raise AnswerRefused('expected {"attributes": {...}}')
    if len(attributes) > MAX_ANSWER_ATTRIBUTES:
        raise AnswerRefused(f"more than {MAX_ANSWER_ATTRIBUTES} attributes")
    return attributes


def clean_values(attributes: Mapping[str, Any], definitions: Mapping[str, tuple[str, list[str]]]) -> Answer:
    """The values of CRM-managed attributes (`definitions`: key -> (type, options)) that
    fit their type; the rest is counted as ignored."""
    values: dict[str, Any] = {}
    ignored = 0
    for key, value in attributes.items():
        definition = definitions.get(key)
        if definition is None:
            ignored += 1
            continue
        try:
            values[key] = coerce_attribute(definition[0], definition[1], value)
        except ValueError:
            ignored += 1
    return Answer(values, ignored)
